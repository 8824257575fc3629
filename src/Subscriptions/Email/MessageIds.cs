using System.Globalization;
using System.Security.Cryptography;
using System.Text;
using System.Text.RegularExpressions;
using Microsoft.Extensions.Options;
using Subscriptions.Infrastructure;

namespace Subscriptions.Email;

internal enum SentEmailKind
{
    /// <summary>A digest: a row of <c>deliveries</c>.</summary>
    Delivery,

    /// <summary>A confirmation or notice: a row of <c>email_outbox</c>.</summary>
    Outbox,
}

/// <summary>An email this service sent, as its Message-ID or return path names it.</summary>
internal sealed record SentEmail(SentEmailKind Kind, long Id, DateOnly? Day = null);

/// <summary>
/// The Message-IDs of this service's emails: <c>delivery-42.20261125.3f9a0c12be77@example.org</c> is what the email is
/// (a digest's delivery and its day, or <c>outbox-7</c> for a confirmation or notice) and a MAC of that (48 bits of
/// HMAC-SHA256 under a key derived from <c>App:TokenSecret</c>). The same email sent again after a crash carries the same
/// Message-ID, and the receiving side can recognise the repeat. The MAC makes them unguessable: a bounce report that quotes
/// one is about an email that went to that subscriber, not a number someone counted up to. The return paths (VERP) carry
/// the same left part, so an email's MAC is the same in both.
/// </summary>
internal sealed partial class MessageIds
{
    // 48 bits: a forger gets one try per report they get into the mailbox; hex, because some relays fold the case of local parts.
    private const int MacBytes = 6;

    private readonly string _domain;
    private readonly Lazy<HmacSha256> _hmac;

    public MessageIds(IOptions<MailOptions> mail, IConfiguration configuration)
    {
        _domain = mail.Value.FromAddress.Domain;
        // The links' secret (App:TokenSecret, checked at start-up wherever emails are sent), under a key of its own. Its name
        // is that of the first use, the return paths: mail sent since then keeps return paths that verify.
        _hmac = new(() => new HmacSha256(HKDF.DeriveKey(HashAlgorithmName.SHA256, Encoding.UTF8.GetBytes(configuration["App:TokenSecret"] ?? ""),
            outputLength: 32, salt: [], info: "Mail:BounceAddress VERP"u8.ToArray())));
    }

    /// <summary>The left part of a digest's Message-ID: <c>delivery-42.20261125.3f9a0c12be77</c>.</summary>
    public string ForDelivery(long deliveryId, DateOnly day) => Signed($"delivery-{deliveryId}.{day:yyyyMMdd}");

    /// <summary>The left part of a confirmation's or notice's Message-ID: <c>outbox-7.8d1e44a0b2c9</c>.</summary>
    public string ForOutbox(long outboxId) => Signed($"outbox-{outboxId}");

    /// <summary>The email a left part names (<c>delivery-42.20261125.3f9a0c12be77</c>) when its MAC is right; else null.</summary>
    public SentEmail? Verify(string localPart)
    {
        var dot = localPart.LastIndexOf('.');
        var identity = dot > 0 ? localPart[..dot].ToLowerInvariant() : "";
        if (localPart.Length - dot - 1 != MacBytes * 2 || Parse(identity) is not { } sent)
        {
            return null;
        }
        return CryptographicOperations.FixedTimeEquals(Encoding.ASCII.GetBytes(Mac(identity)), Encoding.ASCII.GetBytes(localPart[(dot + 1)..].ToLowerInvariant()))
            ? sent
            : null;
    }

    /// <summary>The email a Message-ID of ours names (in the From address's domain, its MAC right); null for any other.</summary>
    public SentEmail? OfMessageId(string? messageId) =>
        LocalPartOf(messageId) is { } localPart ? Verify(localPart) : null;

    /// <summary>The left part of a Message-ID of ours whose MAC is right (what its return path carries); null for any other.</summary>
    public string? VerifiedLocalPartOf(string? messageId) =>
        LocalPartOf(messageId) is { } localPart && Verify(localPart) is not null ? localPart : null;

    /// <summary>
    /// The email a Message-ID of ours names, its MAC right or, as before Message-IDs carried one, missing. Only for a source
    /// that is itself authenticated (the webhook, signed with <c>Bounces:WebhookSecret</c>).
    /// </summary>
    public SentEmail? OfTrustedMessageId(string? messageId) =>
        LocalPartOf(messageId) is { } localPart ? Verify(localPart) ?? Parse(localPart.ToLowerInvariant()) : null;

    private string? LocalPartOf(string? messageId)
    {
        var at = messageId?.LastIndexOf('@') ?? -1;
        return at > 0 && messageId![(at + 1)..].Trim('>').Equals(_domain, StringComparison.OrdinalIgnoreCase) ? messageId[..at].TrimStart('<') : null;
    }

    private string Signed(string identity) => $"{identity}.{Mac(identity)}";

    private string Mac(string identity)
    {
        Span<byte> mac = stackalloc byte[MacBytes];
        _hmac.Value.Compute(Encoding.ASCII.GetBytes(identity), mac);
        return Convert.ToHexStringLower(mac);
    }

    private static SentEmail? Parse(string identity)
    {
        var match = Identity().Match(identity);
        if (!match.Success)
        {
            return null;
        }
        if (match.Groups["outbox"].Success)
        {
            return long.TryParse(match.Groups["outbox"].ValueSpan, NumberStyles.None, CultureInfo.InvariantCulture, out var outboxId)
                ? new SentEmail(SentEmailKind.Outbox, outboxId)
                : null;
        }
        return long.TryParse(match.Groups["delivery"].ValueSpan, NumberStyles.None, CultureInfo.InvariantCulture, out var deliveryId)
            && DateOnly.TryParseExact(match.Groups["day"].ValueSpan, "yyyyMMdd", CultureInfo.InvariantCulture, DateTimeStyles.None, out var day)
            ? new SentEmail(SentEmailKind.Delivery, deliveryId, day)
            : null;
    }

    [GeneratedRegex(@"^(?:delivery-(?<delivery>\d{1,18})\.(?<day>\d{8})|outbox-(?<outbox>\d{1,18}))$", RegexOptions.CultureInvariant)]
    private static partial Regex Identity();
}
