using System.Security.Cryptography;
using System.Text;
using System.Text.Json;

namespace Subscriptions.Bounces;

/// <summary>
/// Providers' bounce and complaint events as <c>POST /webhooks/bounces</c> receives them: the generic
/// form <c>{"type": "bounce"|"complaint", "email": "...", "status": "5.1.1", "permanent": true}</c>
/// (one object or an array of them), or Postmark's bounce and spam-complaint webhooks.
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

    /// <summary>The events in a body, or an error saying what is wrong with it.</summary>
    public static (IReadOnlyList<BounceEvent> Events, string? Error) Parse(byte[] body)
    {
        try
        {
            using var document = JsonDocument.Parse(body);
            var root = document.RootElement;
            var items = root.ValueKind == JsonValueKind.Array ? [.. root.EnumerateArray()] : new List<JsonElement> { root };
            var events = new List<BounceEvent>();
            foreach (var item in items)
            {
                if (item.ValueKind != JsonValueKind.Object)
                {
                    return ([], "each event must be a JSON object");
                }
                var (found, error) = item.TryGetProperty("RecordType", out _) ? ReadPostmark(item) : ReadGeneric(item);
                if (error is not null)
                {
                    return ([], error);
                }
                if (found is not null)
                {
                    events.Add(found);
                }
            }
            return (events, null);
        }
        catch (JsonException)
        {
            return ([], "the body is not JSON");
        }
    }

    private static (BounceEvent?, string?) ReadGeneric(JsonElement item)
    {
        if (Text(item, "email") is not { } email || !email.Contains('@', StringComparison.Ordinal))
        {
            return (null, "\"email\" must be an address");
        }
        var status = Text(item, "status");
        var messageId = Text(item, "messageId")?.Trim('<', '>');
        switch (Text(item, "type"))
        {
            case "complaint":
                return (new BounceEvent(BounceKind.Complaint, email, messageId, status), null);
            case "bounce":
                bool? permanent = item.TryGetProperty("permanent", out var flag) && flag.ValueKind is JsonValueKind.True or JsonValueKind.False
                    ? flag.GetBoolean()
                    : status is ['5', ..] ? true : status is ['4', ..] ? false : null;
                return permanent is { } hard
                    ? (new BounceEvent(hard ? BounceKind.Hard : BounceKind.Soft, email, messageId, status), null)
                    : (null, "a bounce needs \"permanent\" (true or false) or a \"status\" such as \"5.1.1\"");
            default:
                return (null, "\"type\" must be \"bounce\" or \"complaint\"");
        }
    }

    // Postmark's MessageID is its own, not the Message-ID header we sent, so its events are matched by address.
    private static (BounceEvent?, string?) ReadPostmark(JsonElement item)
    {
        if (Text(item, "Email") is not { } email || !email.Contains('@', StringComparison.Ordinal))
        {
            return (null, "\"Email\" must be an address");
        }
        var kind = (Text(item, "RecordType"), Text(item, "Type")) switch
        {
            ("SpamComplaint", _) or (_, "SpamComplaint") => BounceKind.Complaint,
            ("Bounce", "HardBounce" or "BadEmailAddress" or "ManuallyDeactivated") => BounceKind.Hard,
            ("Bounce", "SoftBounce" or "Transient" or "DnsError") => BounceKind.Soft,
            // Auto-responders, subscribe requests, open-relay tests and the like are no bounce.
            ("Bounce", _) => (BounceKind?)null,
            _ => null,
        };
        if (kind is null && Text(item, "RecordType") is not ("Bounce" or "SpamComplaint"))
        {
            return (null, "\"RecordType\" must be \"Bounce\" or \"SpamComplaint\"");
        }
        return (kind is { } known ? new BounceEvent(known, email, null, Text(item, "Type")) : null, null);
    }

    private static string? Text(JsonElement item, string name) =>
        item.TryGetProperty(name, out var value) && value.ValueKind == JsonValueKind.String ? value.GetString() : null;
}
