using Microsoft.Extensions.Options;
using MimeKit;
using Subscriptions.Email;
using Subscriptions.Infrastructure;

namespace Subscriptions.Subscribers;

/// <summary>The emails of the subscriber lifecycle, each in HTML and plain text.</summary>
internal sealed class LifecycleEmails(IOptions<MailOptions> mail, LinkTokens tokens, MessageIds messageIds, TimeProvider time)
{
    // Each email's Message-ID comes from its outbox row, so the one a crash makes us send again repeats it.
    public MimeMessage Confirmation(long outboxId, string email, long subscriberId, byte[] confirmationNonce, DateTimeOffset expiresAt)
    {
        var link = tokens.Link(LinkPurpose.Confirm, subscriberId, confirmationNonce);
        // When it ends, not "for 7 days": those count from the signup, and an email held up by the relay arrives later.
        var until = expiresAt.ToUniversalTime().ToString("d MMMM yyyy, HH:mm 'UTC'", System.Globalization.CultureInfo.InvariantCulture);
        var body = new BodyBuilder
        {
            TextBody = $"""
                Please confirm your subscription to the daily trending papers.

                Open this link to confirm:
                {link}

                The link works until {until}. If you did not ask for this, ignore this email
                and you will hear nothing more from us.
                """,
            HtmlBody = Html.Document("Confirm your subscription", $"""
                <p>Please confirm your subscription to the daily trending papers.</p>
                <p><a href="{Html.Encode(link.AbsoluteUri)}" style="display:inline-block;padding:10px 18px;background:#1a56db;color:#ffffff;text-decoration:none;border-radius:4px">Confirm my subscription</a></p>
                <p style="color:#555">The link works until {until}. If you did not ask for this, ignore this email and you will hear nothing more from us.</p>
                """),
        };
        return Compose(outboxId, email, "Confirm your subscription to daily trending papers", body);
    }

    public MimeMessage AlreadySubscribed(long outboxId, string email, long subscriberId, byte[] subscriptionKey)
    {
        var unsubscribe = tokens.Link(LinkPurpose.Unsubscribe, subscriberId, subscriptionKey);
        var preferences = tokens.Link(LinkPurpose.Preferences, subscriberId, subscriptionKey);
        var body = new BodyBuilder
        {
            TextBody = $"""
                Someone, probably you, asked to subscribe this address to the daily trending papers.
                It is already subscribed, so nothing has changed.

                To change your topics, open:
                {preferences}

                To stop the emails, open:
                {unsubscribe}
                """,
            HtmlBody = Html.Document("You are already subscribed", $"""
                <p>Someone, probably you, asked to subscribe this address to the daily trending papers.
                It is already subscribed, so nothing has changed.</p>
                <p><a href="{Html.Encode(preferences.AbsoluteUri)}">Change your topics</a>, or
                <a href="{Html.Encode(unsubscribe.AbsoluteUri)}">unsubscribe</a> if you no longer want the emails.</p>
                """),
        };
        return Compose(outboxId, email, "You are already subscribed to daily trending papers", body);
    }

    private MimeMessage Compose(long outboxId, string email, string subject, BodyBuilder body) =>
        MailEnvelope.Create(mail.Value, time.GetUtcNow(), email, subject, body, messageIds.ForOutbox(outboxId));
}
