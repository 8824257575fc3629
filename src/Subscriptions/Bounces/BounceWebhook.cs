using System.Security.Cryptography;
using System.Text;
using System.Text.Json;
using Subscriptions.Subscribers;

namespace Subscriptions.Bounces;

/// <summary>
/// Providers' bounce and complaint events as <c>POST /webhooks/bounces</c> receives them: the generic
/// form <c>{"type": "bounce"|"complaint", "email": "...", "status": "5.1.1", "permanent": true}</c>
/// (one object or an array of them), Postmark's bounce and spam-complaint webhooks, or Amazon SES's
/// bounce and complaint notifications as Amazon SNS posts them (or raw).
/// </summary>
internal static class BounceWebhook
{
    public const string SignatureHeader = "X-Signature";

    /// <summary>
    /// Whether the request carries the shared secret: an <c>X-Signature: sha256=&lt;hex&gt;</c> HMAC-SHA256 of
    /// the raw body, or HTTP Basic credentials whose password is the secret (how Postmark authenticates
    /// its webhooks). Both compared in fixed time.
    /// </summary>
    public static bool IsAuthentic(byte[] body, string? signature, string? authorization, string secret)
    {
        var key = Encoding.UTF8.GetBytes(secret);
        if (signature is not null && signature.StartsWith("sha256=", StringComparison.OrdinalIgnoreCase))
        {
            byte[] claimed;
            try
            {
                claimed = Convert.FromHexString(signature.AsSpan("sha256=".Length).Trim());
            }
            catch (FormatException)
            {
                return false;
            }
            return CryptographicOperations.FixedTimeEquals(HMACSHA256.HashData(key, body), claimed);
        }
        if (authorization is not null && authorization.StartsWith("Basic ", StringComparison.OrdinalIgnoreCase))
        {
            string credentials;
            try
            {
                credentials = Encoding.UTF8.GetString(Convert.FromBase64String(authorization["Basic ".Length..].Trim()));
            }
            catch (FormatException)
            {
                return false;
            }
            var password = credentials[(credentials.IndexOf(':', StringComparison.Ordinal) + 1)..];
            // Hashing both sides makes the comparison fixed-time whatever the lengths.
            return CryptographicOperations.FixedTimeEquals(SHA256.HashData(Encoding.UTF8.GetBytes(password)), SHA256.HashData(key));
        }
        return false;
    }

    /// <summary>
    /// The events in a body, or an error saying what is wrong with it; <c>Notice</c> is something the operator
    /// must act on (Amazon SNS asking to confirm a subscription).
    /// </summary>
    public static (IReadOnlyList<BounceEvent> Events, string? Error, string? Notice) Parse(byte[] body)
    {
        try
        {
            using var document = JsonDocument.Parse(body);
            var root = document.RootElement;
            var items = root.ValueKind == JsonValueKind.Array ? [.. root.EnumerateArray()] : new List<JsonElement> { root };
            var events = new List<BounceEvent>();
            string? notice = null;
            foreach (var item in items)
            {
                if (item.ValueKind != JsonValueKind.Object)
                {
                    return ([], "each event must be a JSON object", null);
                }
                if (Text(item, "Type") == "SubscriptionConfirmation")
                {
                    notice = $"Amazon SNS asks to confirm the subscription of topic {Text(item, "TopicArn")}: open {Text(item, "SubscribeURL")}";
                    continue;
                }
                var (found, error) = item switch
                {
                    _ when item.TryGetProperty("RecordType", out _) => ReadPostmark(item),
                    _ when item.TryGetProperty("Type", out _) || item.TryGetProperty("notificationType", out _) || item.TryGetProperty("eventType", out _)
                        => ReadAmazonSes(item),
                    _ => ReadGeneric(item),
                };
                if (error is not null)
                {
                    return ([], error, null);
                }
                var notification = NotificationId(item);
                if (notification?.Length > 200)
                {
                    return ([], "a notification's id must be at most 200 characters", null);
                }
                events.AddRange(found.Select(bounce => bounce with { Notification = notification }));
            }
            // Longer than any address can be (RFC 5321): no one's, and more than the suppression list's index can hold.
            return events.Any(e => e.Recipient?.Length > EmailAddresses.MaxLength)
                ? ([], $"an address is longer than {EmailAddresses.MaxLength} characters", null)
                : (events, null, notice);
        }
        catch (JsonException)
        {
            return ([], "the body is not JSON", null);
        }
        catch (UnstorableTextException e)
        {
            return ([], e.Message, null);
        }
    }

    private static (List<BounceEvent>, string?) ReadGeneric(JsonElement item)
    {
        if (Text(item, "email") is not { } email || !email.Contains('@', StringComparison.Ordinal))
        {
            return ([], "\"email\" must be an address");
        }
        var status = Text(item, "status");
        var messageId = Text(item, "messageId")?.Trim('<', '>');
        switch (Text(item, "type"))
        {
            case "complaint":
                return ([new BounceEvent(BounceKind.Complaint, email, messageId, status)], null);
            case "bounce":
                bool? permanent = item.TryGetProperty("permanent", out var flag) && flag.ValueKind is JsonValueKind.True or JsonValueKind.False
                    ? flag.GetBoolean()
                    : status is ['5', ..] ? BounceReports.IsPermanent(status) : status is ['4', ..] ? false : null;
                return permanent is { } hard
                    ? ([new BounceEvent(hard ? BounceKind.Hard : BounceKind.Soft, email, messageId, status)], null)
                    : ([], "a bounce needs \"permanent\" (true or false) or a \"status\" such as \"5.1.1\"");
            default:
                return ([], "\"type\" must be \"bounce\" or \"complaint\"");
        }
    }

    // Postmark's MessageID is its own, not the Message-ID header we sent, so its events are matched by address.
    private static (List<BounceEvent>, string?) ReadPostmark(JsonElement item)
    {
        if (Text(item, "Email") is not { } email || !email.Contains('@', StringComparison.Ordinal))
        {
            return ([], "\"Email\" must be an address");
        }
        var kind = (Text(item, "RecordType"), Text(item, "Type")) switch
        {
            ("SpamComplaint", _) or (_, "SpamComplaint") => BounceKind.Complaint,
            ("Bounce", "HardBounce" or "BadEmailAddress" or "ManuallyDeactivated") => BounceKind.Hard,
            ("Bounce", "SoftBounce" or "Transient" or "DnsError") => BounceKind.Soft,
            // Auto-responders, subscribe requests, open-relay tests and the like are no bounce.
            _ => (BounceKind?)null,
        };
        if (kind is null && Text(item, "RecordType") is not ("Bounce" or "SpamComplaint"))
        {
            return ([], "\"RecordType\" must be \"Bounce\" or \"SpamComplaint\"");
        }
        return (kind is { } known ? [new BounceEvent(known, email, null, Text(item, "Type"))] : [], null);
    }

    /// <summary>
    /// The provider's own id of a notification, by which one delivered again is recognised: Amazon SNS's <c>MessageId</c>,
    /// SES's <c>feedbackId</c> (raw delivery, no SNS envelope), Postmark's <c>ID</c>, the generic form's <c>id</c>; null
    /// when it has none.
    /// </summary>
    private static string? NotificationId(JsonElement item)
    {
        if (item.TryGetProperty("RecordType", out _))
        {
            return item.TryGetProperty("ID", out var id) && id.ValueKind is JsonValueKind.Number or JsonValueKind.String ? $"postmark:{id}" : null;
        }
        if (Text(item, "Type") is not null)
        {
            return Text(item, "MessageId") is { } sns ? $"sns:{sns}" : null;
        }
        if (Text(item, "notificationType") is not null || Text(item, "eventType") is not null)
        {
            var feedback = new[] { "bounce", "complaint" }.Select(name => item.TryGetProperty(name, out var part) && part.ValueKind == JsonValueKind.Object ? Text(part, "feedbackId") : null)
                .FirstOrDefault(found => found is not null);
            return feedback is null ? null : $"ses:{feedback}";
        }
        return Text(item, "id") is { } generic ? $"generic:{generic}" : null;
    }

    /// <summary>An SNS notification whose <c>Message</c> is SES's JSON as a string, or SES's JSON itself (SNS raw delivery).</summary>
    private static (List<BounceEvent>, string?) ReadAmazonSes(JsonElement item)
    {
        if (Text(item, "Type") is not { } snsType)
        {
            return ReadSesNotification(item);
        }
        if (snsType != "Notification")
        {
            return ([], null); // UnsubscribeConfirmation and the like: nothing to record.
        }
        if (Text(item, "Message") is not { } message)
        {
            return ([], "an SNS notification needs its \"Message\"");
        }
        using var inner = JsonDocument.Parse(message);
        return inner.RootElement.ValueKind == JsonValueKind.Object
            ? ReadSesNotification(inner.RootElement)
            : ([], "an SNS notification's \"Message\" must be a JSON object");
    }

    private static (List<BounceEvent>, string?) ReadSesNotification(JsonElement ses)
    {
        var messageId = ses.TryGetProperty("mail", out var mail) && mail.ValueKind == JsonValueKind.Object
            && mail.TryGetProperty("commonHeaders", out var headers) && headers.ValueKind == JsonValueKind.Object
            ? Text(headers, "messageId")?.Trim('<', '>')
            : null;
        switch (Text(ses, "notificationType") ?? Text(ses, "eventType"))
        {
            case "Bounce":
                if (!ses.TryGetProperty("bounce", out var bounce))
                {
                    return ([], null);
                }
                if (bounce.ValueKind != JsonValueKind.Object)
                {
                    return ([], "\"bounce\" must be an object");
                }
                // "Undetermined" bounces say nothing about the address.
                BounceKind? kind = Text(bounce, "bounceType") switch
                {
                    "Permanent" => BounceKind.Hard,
                    "Transient" => BounceKind.Soft,
                    _ => null,
                };
                return kind is { } bounced
                    ? SesRecipients(bounce, "bouncedRecipients", recipient => new BounceEvent(bounced, Text(recipient, "emailAddress"), messageId, Text(recipient, "status")))
                    : ([], null);
            case "Complaint":
                if (!ses.TryGetProperty("complaint", out var complaint))
                {
                    return ([], null);
                }
                if (complaint.ValueKind != JsonValueKind.Object)
                {
                    return ([], "\"complaint\" must be an object");
                }
                if (Text(complaint, "complaintFeedbackType") == "not-spam")
                {
                    return ([], null);
                }
                return SesRecipients(complaint, "complainedRecipients", recipient => new BounceEvent(BounceKind.Complaint, Text(recipient, "emailAddress"), messageId));
            case null:
                return ([], "not an Amazon SES notification: no \"notificationType\" or \"eventType\"");
            default:
                return ([], null); // Delivery, Send, Open, …: nothing to act on.
        }
    }

    private static (List<BounceEvent>, string?) SesRecipients(JsonElement parent, string name, Func<JsonElement, BounceEvent> toEvent)
    {
        if (!parent.TryGetProperty(name, out var recipients) || recipients.ValueKind != JsonValueKind.Array
            || recipients.EnumerateArray().Any(recipient => recipient.ValueKind != JsonValueKind.Object || Text(recipient, "emailAddress") is not { } address || !address.Contains('@', StringComparison.Ordinal)))
        {
            return ([], $"\"{name}\" must be a list of {{\"emailAddress\": \"...\"}}");
        }
        return ([.. recipients.EnumerateArray().Select(toEvent)], null);
    }

    /// <summary>
    /// A string property of an object, or null when it has none. A string no database column can hold is the
    /// sender's error, not a missing value: a NUL (PostgreSQL's text cannot hold one) or an escaped lone surrogate
    /// (not text at all; <see cref="JsonElement.GetString"/> refuses it).
    /// </summary>
    private static string? Text(JsonElement item, string name)
    {
        if (item.ValueKind != JsonValueKind.Object || !item.TryGetProperty(name, out var value) || value.ValueKind != JsonValueKind.String)
        {
            return null;
        }
        string text;
        try
        {
            text = value.GetString()!;
        }
        catch (InvalidOperationException)
        {
            throw new UnstorableTextException($"\"{name}\" holds an unpaired surrogate (\\ud800-\\udfff), which is not text");
        }
        return text.Contains('\0', StringComparison.Ordinal)
            ? throw new UnstorableTextException($"\"{name}\" must not contain a NUL character (\\u0000)")
            : text;
    }

    private sealed class UnstorableTextException(string message) : Exception(message);
}
