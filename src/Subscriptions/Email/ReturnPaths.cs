using Microsoft.Extensions.Options;
using MimeKit;

namespace Subscriptions.Email;

/// <summary>
/// VERP: with <c>Mail:BounceAddress</c> set (bounces@example.org), each email leaves with its own envelope sender,
/// <c>bounces+delivery-42.20261125.3f9a0c12be77@example.org</c>: the left part of its Message-ID, which names the email
/// and carries a MAC of that (<see cref="MessageIds"/>). A bounce comes back to that address, so the report names the
/// email that bounced even when it returns none of it and names an alias rather than the address we sent to; the MAC
/// keeps anyone who can write to the bounce mailbox from bouncing addresses at will.
/// </summary>
internal sealed class ReturnPaths(IOptions<MailOptions> mail, MessageIds messageIds)
{
    private readonly MailboxAddress? _bounce = mail.Value.BounceMailbox;

    public bool IsEnabled => _bounce is not null;

    /// <summary>The envelope sender of a message: its own return path, or the From address when VERP is off.</summary>
    public MailboxAddress For(MimeMessage message)
    {
        var from = message.From.Mailboxes.First();
        if (_bounce is null)
        {
            return from;
        }
        return messageIds.VerifiedLocalPartOf(message.MessageId) is { } localPart
            ? new MailboxAddress("", $"{_bounce.LocalPart}+{localPart}@{_bounce.Domain}")
            : new MailboxAddress("", _bounce.Address);
    }

    /// <summary>
    /// The email a report is about, read from the return path it was addressed to (Delivered-To, X-Original-To,
    /// Envelope-To, To); null without VERP, or when no such address carries a valid MAC.
    /// </summary>
    public SentEmail? SentEmailOf(MimeMessage report)
    {
        if (_bounce is null)
        {
            return null;
        }
        var prefix = _bounce.LocalPart + "+";
        foreach (var address in AddressesOf(report))
        {
            var at = address.LastIndexOf('@');
            if (at > prefix.Length && address[(at + 1)..].Equals(_bounce.Domain, StringComparison.OrdinalIgnoreCase)
                && address.StartsWith(prefix, StringComparison.OrdinalIgnoreCase) && messageIds.Verify(address[prefix.Length..at]) is { } sent)
            {
                return sent;
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
}
