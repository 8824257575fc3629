using System.Security.Cryptography;
using System.Text;
using Microsoft.Extensions.Options;
using MimeKit;

namespace Subscriptions.Email;

/// <summary>
/// VERP: with <c>Mail:BounceAddress</c> set (bounces@example.org), each email leaves with its own envelope sender,
/// <c>bounces+delivery-42.20261125.3f9a0c12be77@example.org</c>: the identity its Message-ID names, and a MAC
/// of it. A bounce comes back to that address, so the report names the email that bounced even when it returns
/// none of it and names an alias rather than the address we sent to. The MAC (HMAC-SHA256 under a key derived
/// from <c>App:TokenSecret</c>) keeps anyone who can write to the bounce mailbox from bouncing addresses at will.
/// </summary>
internal sealed class ReturnPaths
{
    // 48 bits: a forger gets one try per report they get into the mailbox; hex, because some relays fold the case of local parts.
    private const int MacBytes = 6;

    private readonly MailboxAddress? _bounce;
    private readonly string _messageIdDomain;
    private readonly Lazy<byte[]> _key;

    public ReturnPaths(IOptions<MailOptions> mail, IConfiguration configuration)
    {
        _bounce = mail.Value.BounceMailbox;
        _messageIdDomain = mail.Value.FromAddress.Domain;
        // The links' secret (App:TokenSecret, checked at start-up wherever emails are sent), under a key of its own.
        _key = new(() => HKDF.DeriveKey(HashAlgorithmName.SHA256, Encoding.UTF8.GetBytes(configuration["App:TokenSecret"] ?? ""),
            outputLength: 32, salt: [], info: "Mail:BounceAddress VERP"u8.ToArray()));
    }

    public bool IsEnabled => _bounce is not null;

    /// <summary>The envelope sender of a message: its own return path, or the From address when VERP is off.</summary>
    public MailboxAddress For(MimeMessage message)
    {
        var from = message.From.Mailboxes.First();
        if (_bounce is null)
        {
            return from;
        }
        var identity = IdentityOf(message.MessageId);
        return identity is null
            ? new MailboxAddress("", _bounce.Address)
            : new MailboxAddress("", $"{_bounce.LocalPart}+{identity}.{Mac(identity)}@{_bounce.Domain}");
    }

    /// <summary>
    /// The Message-ID of the email a report is about, read from the return path it was addressed to
    /// (Delivered-To, X-Original-To, Envelope-To, To); null without VERP, or when no such address carries a valid MAC.
    /// </summary>
    public string? MessageIdOf(MimeMessage report)
    {
        if (_bounce is null)
        {
            return null;
        }
        var prefix = _bounce.LocalPart + "+";
        foreach (var address in AddressesOf(report))
        {
            var at = address.LastIndexOf('@');
            if (at < 0 || !address[(at + 1)..].Equals(_bounce.Domain, StringComparison.OrdinalIgnoreCase)
                || !address.StartsWith(prefix, StringComparison.OrdinalIgnoreCase))
            {
                continue;
            }
            var tag = address[prefix.Length..at];
            var dot = tag.LastIndexOf('.');
            if (dot <= 0)
            {
                continue;
            }
            var identity = tag[..dot].ToLowerInvariant();
            if (IsIdentity(identity) && CryptographicOperations.FixedTimeEquals(
                    Encoding.ASCII.GetBytes(Mac(identity)), Encoding.ASCII.GetBytes(tag[(dot + 1)..].ToLowerInvariant())))
            {
                return $"{identity}@{_messageIdDomain}";
            }
        }
        return null;
    }

    private static IEnumerable<string> AddressesOf(MimeMessage report)
    {
        foreach (var name in new[] { "Delivered-To", "X-Original-To", "Envelope-To", "X-Envelope-To" })
        {
            foreach (var header in report.Headers.Where(header => header.Field.Equals(name, StringComparison.OrdinalIgnoreCase)))
            {
                yield return header.Value.Trim().Trim('<', '>').Trim();
            }
        }
        foreach (var mailbox in report.To.Mailboxes)
        {
            yield return mailbox.Address;
        }
    }

    /// <summary>The left part of a Message-ID this service made (<c>delivery-42.20261125</c>, <c>outbox-7</c>), or null.</summary>
    private string? IdentityOf(string? messageId)
    {
        var at = messageId?.LastIndexOf('@') ?? -1;
        if (at <= 0 || !messageId![(at + 1)..].Equals(_messageIdDomain, StringComparison.OrdinalIgnoreCase))
        {
            return null;
        }
        var identity = messageId[..at];
        return IsIdentity(identity) ? identity : null;
    }

    // Letters, digits, '-' and inner single dots: always a valid dot-atom local part, never needing quotes.
    private static bool IsIdentity(string identity) =>
        identity.Length is > 0 and <= 40 && identity.All(c => char.IsAsciiLetterLower(c) || char.IsAsciiDigit(c) || c is '-' or '.')
        && identity[0] != '.' && identity[^1] != '.' && !identity.Contains("..", StringComparison.Ordinal);

    private string Mac(string identity) =>
        Convert.ToHexStringLower(HMACSHA256.HashData(_key.Value, Encoding.ASCII.GetBytes(identity)).AsSpan(0, MacBytes));
}
