using System.Globalization;
using Microsoft.AspNetCore.Http.HttpResults;
using Subscriptions.Infrastructure;
using Subscriptions.Matching;

namespace Subscriptions.Subscribers;

/// <summary>The server-rendered pages of the lifecycle; they work without JavaScript.</summary>
internal static class SubscriberPages
{
    private const string Field = "display:block;width:100%;box-sizing:border-box;padding:10px;font-size:1em;border:1px solid #999;border-radius:4px";
    private const string SecondaryButton = "padding:10px 18px;font-size:1em;background:#ffffff;color:#1a56db;border:1px solid #1a56db;border-radius:4px;cursor:pointer";
    private const string Button = "padding:10px 18px;font-size:1em;background:#1a56db;color:#ffffff;border:0;border-radius:4px;cursor:pointer";

    public static ContentHttpResult Signup(
        string? email = null, string? topics = null, IReadOnlyDictionary<string, string[]>? errors = null,
        int statusCode = StatusCodes.Status200OK, string preview = "")
    {
        var body = $"""
            <p>Every morning, one email with the day's trending research papers on the topics you choose.</p>
            {Problems(errors)}
            <form method="post" action="/subscriptions">
            <p><label for="email"><strong>Email address</strong></label>
            <input id="email" name="email" type="email" autocomplete="email" required maxlength="{EmailAddresses.MaxLength}" value="{Html.Encode(email)}" style="{Field}"></p>
            <p><label for="topics"><strong>Topics</strong>, one per line</label>
            <textarea id="topics" name="topics" rows="5" required aria-describedby="topics-help" style="{Field}">{Html.Encode(topics)}</textarea>
            <small id="topics-help" style="color:#555">Words match their variants (<em>autoencoders</em> finds <em>autoencoder</em>).
            Use "quotes" for a phrase, OR between alternatives, and -word to leave papers out, e.g. <code>depth estimation -medical</code>.
            Up to {TopicRules.MaxTopics} topics.</small></p>
            <div aria-hidden="true" style="position:absolute;left:-10000px;top:auto;width:1px;height:1px;overflow:hidden">
            <label for="website">Leave this field empty</label>
            <input id="website" name="website" type="text" tabindex="-1" autocomplete="off" value="">
            </div>
            <p><button type="submit" style="{Button}">Subscribe</button>
            <button type="submit" formaction="/" formmethod="get" formnovalidate name="preview" value="1" style="{SecondaryButton}">Preview today's papers</button></p>
            </form>
            {preview}
            <p style="color:#555">We send a link to confirm the address first. Every email has a one-click unsubscribe link.</p>
            """;
        return Page("Trending papers in your inbox", body, statusCode);
    }

    public static ContentHttpResult SignupAccepted() => Page("Check your inbox",
        $"""
        <p>{Html.Encode(SubscriberEndpoints.AcceptedMessage)}</p>
        <p><a href="/">Back to the signup page</a></p>
        """, StatusCodes.Status202Accepted);

    public static ContentHttpResult Confirmed(ConfirmOutcome outcome) => outcome switch
    {
        ConfirmOutcome.Confirmed => Page("You are subscribed",
            "<p>Thank you: your address is confirmed. The next morning's email will bring the trending papers on your topics.</p>" +
            "<p>Every email has a link to change your topics and a link to unsubscribe.</p>"),
        ConfirmOutcome.AlreadyConfirmed => Page("Already confirmed",
            "<p>This address was already confirmed; nothing has changed. Your daily email keeps coming.</p>"),
        ConfirmOutcome.Expired => Page("This link has expired",
            $"<p>Confirmation links work for {(int)SubscriberStore.ConfirmationLifetime.TotalDays} days, and this one is older. " +
            "<a href=\"/\">Sign up again</a> to get a fresh link.</p>", StatusCodes.Status410Gone),
        _ => InvalidLink(LinkPurpose.Confirm),
    };

    public static ContentHttpResult MissingToken() => Page("This link is incomplete",
        "<p>The link has no token. Open the full link from your email, or <a href=\"/\">go to the signup page</a>.</p>",
        StatusCodes.Status400BadRequest);

    public static ContentHttpResult InvalidLink(LinkPurpose purpose)
    {
        var what = purpose switch
        {
            LinkPurpose.Confirm => "confirmation",
            LinkPurpose.Unsubscribe => "unsubscribe",
            _ => "preferences",
        };
        return Page("This link is not valid",
            $"<p>This {what} link is unknown or no longer works: a newer email may have replaced it, or it was " +
            "copied incompletely. <a href=\"/\">Go to the signup page</a> to subscribe.</p>",
            StatusCodes.Status404NotFound);
    }

    public static ContentHttpResult UnsubscribeForm(SubscriberLink subscriber, string token)
    {
        if (subscriber.Status == "unsubscribed")
        {
            return Unsubscribed(UnsubscribeOutcome.AlreadyUnsubscribed);
        }
        return Page("Unsubscribe", $"""
            <p>Stop the daily trending papers for <strong>{Html.Encode(subscriber.Email)}</strong>?</p>
            <form method="post" action="/unsubscribe?token={Html.Encode(Uri.EscapeDataString(token))}">
            <button type="submit" style="{Button}">Unsubscribe</button>
            </form>
            """);
    }

    public static ContentHttpResult Unsubscribed(UnsubscribeOutcome outcome) => Page("You are unsubscribed",
        (outcome == UnsubscribeOutcome.AlreadyUnsubscribed ? "<p>This address was already unsubscribed.</p>" : "<p>You will get no more emails from us.</p>") +
        "<p>Changed your mind? <a href=\"/\">Subscribe again</a>.</p>");

    public static ContentHttpResult Preferences(
        SubscriberPreferences subscriber, string token, string topics, int? maxPapers, IReadOnlyDictionary<string, string[]>? errors = null,
        string preview = "", bool saved = false, int statusCode = StatusCodes.Status200OK)
    {
        var encodedToken = Html.Encode(Uri.EscapeDataString(token));
        var body = $"""
            <p>Topics and options for <strong>{Html.Encode(subscriber.Subscriber.Email)}</strong>.</p>
            {(saved ? "<p role=\"status\" style=\"border:1px solid #0e9f6e;background:#f3faf7;padding:8px 16px\">Saved. The next email follows these settings.</p>" : "")}
            {Problems(errors)}
            <form method="post" action="/preferences?token={encodedToken}">
            <input type="hidden" name="token" value="{Html.Encode(token)}">
            <p><label for="topics"><strong>Topics</strong>, one per line</label>
            <textarea id="topics" name="topics" rows="6" required style="{Field}">{Html.Encode(topics)}</textarea></p>
            <p><label for="max_papers"><strong>Papers per email</strong> (1 to 50)</label>
            <input id="max_papers" name="max_papers" type="number" min="1" max="50" required value="{maxPapers}" style="{Field}"></p>
            <p><button type="submit" style="{Button}">Save</button>
            <button type="submit" formaction="/preferences" formmethod="get" formnovalidate name="preview" value="1" style="{SecondaryButton}">Preview</button></p>
            </form>
            {preview}
            """;
        return Page("Your daily papers", body, statusCode);
    }

    /// <summary>What an email would hold, as a section of the signup or preferences page.</summary>
    public static string PreviewSection(Preview preview)
    {
        if (preview.Day is not { } day)
        {
            return "<section aria-labelledby=\"preview\"><h2 id=\"preview\" style=\"font-size:1.1em\">Preview</h2><p>No papers have been collected yet, so there is nothing to preview.</p></section>";
        }
        var date = day.ToString("d MMMM yyyy", CultureInfo.InvariantCulture);
        var items = preview.Papers.Count == 0
            ? $"<p>No paper of {date} matches these topics.</p>"
            : "<ol style=\"padding-left:1.2em\">" + string.Concat(preview.Papers.Select(paper =>
                $"<li style=\"margin-bottom:8px\"><a href=\"{Html.Encode(paper.PageUrl ?? "#")}\">{Html.Encode(paper.Title)}</a>" +
                (paper.Upvotes is { } upvotes ? $" <span style=\"color:#555\">▲ {upvotes}</span>" : "") +
                $"<br><small style=\"color:#555\">{Html.Encode(MatchReasons.Describe(paper.MatchedTopics, paper.CloseTo))}</small></li>")) + "</ol>";
        return $"<section aria-labelledby=\"preview\"><h2 id=\"preview\" style=\"font-size:1.1em\">The email for {date} would hold {preview.Papers.Count} paper{(preview.Papers.Count == 1 ? "" : "s")}</h2>{items}</section>";
    }

    private static string Problems(IReadOnlyDictionary<string, string[]>? errors) => errors is { Count: > 0 }
        ? $"""
          <div role="alert" style="border:1px solid #c81e1e;background:#fdf2f2;padding:8px 16px;margin-bottom:16px">
          <p><strong>Please correct the following:</strong></p>
          <ul>{string.Concat(errors.Select(e => $"<li>{Html.Encode(e.Key)}: {Html.Encode(string.Join(" ", e.Value))}</li>"))}</ul>
          </div>
          """
        : "";

    private static ContentHttpResult Page(string title, string body, int statusCode = StatusCodes.Status200OK) =>
        TypedResults.Text(Html.Document(title, body), "text/html; charset=utf-8", statusCode: statusCode);
}
