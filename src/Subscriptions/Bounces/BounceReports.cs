using MimeKit;
using Subscriptions.Email;
using Subscriptions.Subscribers;

namespace Subscriptions.Bounces;

internal enum BounceKind
{
    Hard,
    Soft,
    Complaint,
}

/// <summary>
/// One bounce or complaint. Who it is about: the email of ours that bounced (<see cref="Sent"/>), when the report names it
/// by its return path or Message-ID, else the address it was sent to; with <see cref="RecipientMustBeSubscriber"/>, only
/// when that address is a subscriber's. <see cref="OriginalMessageId"/> is the Message-ID the report gives, as given.
/// <see cref="Status"/> is the RFC 3463 code when known. <see cref="Report"/> is the message in the bounce mailbox it was
/// read from (none for a webhook's); <see cref="Notification"/> the provider's id of the webhook notification it came in.
/// </summary>
internal sealed record BounceEvent(
    BounceKind Kind, string? Recipient, string? OriginalMessageId = null, string? Status = null, MailboxMessage? Report = null,
    SentEmail? Sent = null, bool RecipientMustBeSubscriber = false, string? Notification = null);

/// <summary>
/// Where a report was read: the bounce mailbox's folder (<c>Username@Host/Folder</c>), its UIDVALIDITY and the message's
/// UID, which together name that one message for good (RFC 9051).
/// </summary>
internal sealed record MailboxMessage(string Mailbox, uint UidValidity, uint Uid);

/// <summary>
/// Reads the reports mail servers send back: delivery status notifications (RFC 3464,
/// <c>multipart/report; report-type=delivery-status</c>) and abuse reports (RFC 5965 ARF,
/// <c>report-type=feedback-report</c>), with MimeKit's parts for both.
/// </summary>
internal static class BounceReports
{
    /// <summary>
    /// The bounces and complaints a report holds (none for a delay warning or a report of another kind
    /// of feedback), or null when the message is not a report that can be read: not a
    /// <c>multipart/report</c>, one without the fields that say what happened, or one whose address or
    /// Message-ID holds a NUL (an encoded word can carry one), which PostgreSQL's text cannot.
    /// </summary>
    public static IReadOnlyList<BounceEvent>? Read(MimeMessage message)
    {
        var events = ReadReport(message);
        return events?.Any(e => e.Recipient?.Contains('\0', StringComparison.Ordinal) == true
            || e.OriginalMessageId?.Contains('\0', StringComparison.Ordinal) == true) == true ? null : events;
    }

    private static IReadOnlyList<BounceEvent>? ReadReport(MimeMessage message)
    {
        if (FindReport(message.Body) is not { } report)
        {
            return null;
        }
        // message/rfc822 or text/rfc822-headers: MimeKit parses both into the returned message's headers.
        var originalMessageId = report.OfType<MessagePart>().Select(part => part.Message?.MessageId).FirstOrDefault(id => !string.IsNullOrEmpty(id));

        if (string.Equals(report.ReportType, "delivery-status", StringComparison.OrdinalIgnoreCase))
        {
            return report.OfType<MessageDeliveryStatus>().FirstOrDefault() is { } status
                ? ReadDeliveryStatus(status, originalMessageId)
                : null;
        }
        if (string.Equals(report.ReportType, "feedback-report", StringComparison.OrdinalIgnoreCase))
        {
            var returned = report.OfType<MessagePart>().FirstOrDefault()?.Message;
            return report.OfType<MessageFeedbackReport>().FirstOrDefault() is { } feedback
                ? ReadFeedback(feedback, originalMessageId, returned)
                : null;
        }
        return null;
    }

    private static List<BounceEvent>? ReadDeliveryStatus(MessageDeliveryStatus status, string? originalMessageId)
    {
        var events = new List<BounceEvent>();
        var readable = false;
        // The first group is about the message; each one after it about one recipient.
        foreach (var recipient in status.StatusGroups.Skip(1))
        {
            if (StatusCode(recipient["Status"]) is not { } code)
            {
                continue;
            }
            readable = true;
            // Only a failure is a bounce: "delayed" is a warning, "delivered", "relayed" and "expanded" (2.x.x) are news.
            var action = recipient["Action"]?.Trim();
            if (code[0] == '2' || (!string.IsNullOrEmpty(action) && !action.Equals("failed", StringComparison.OrdinalIgnoreCase)))
            {
                continue;
            }
            var address = Address(recipient["Original-Recipient"]) ?? Address(recipient["Final-Recipient"]);
            events.Add(new BounceEvent(IsPermanent(code) ? BounceKind.Hard : BounceKind.Soft, address, originalMessageId, code));
        }
        return readable ? events : null;
    }

    private static List<BounceEvent>? ReadFeedback(MessageFeedbackReport feedback, string? originalMessageId, MimeMessage? returned)
    {
        var type = feedback.Fields["Feedback-Type"]?.Trim();
        if (string.IsNullOrEmpty(type))
        {
            return null;
        }
        if (!type.Equals("abuse", StringComparison.OrdinalIgnoreCase))
        {
            return [];
        }
        var address = Address(feedback.Fields["Original-Rcpt-To"])
            ?? (returned?.To.Mailboxes.ToList() is [var only] ? Address(only.Address) : null);
        return [new BounceEvent(BounceKind.Complaint, address, originalMessageId, null)];
    }

    private static MultipartReport? FindReport(MimeEntity? entity) => entity switch
    {
        MultipartReport report => report,
        Multipart multipart => multipart.Select(FindReport).FirstOrDefault(report => report is not null),
        _ => null,
    };

    /// <summary>
    /// A 5.x.x status, but for X.2.2, a full mailbox: RFC 3463 has it "used as a persistent transient failure" (Gmail
    /// reports a full mailbox as 5.2.2), so it is counted as a soft bounce and not suppressed at once.
    /// </summary>
    public static bool IsPermanent(string status)
    {
        var code = CodeOf(status);
        return code.StartsWith('5') && !code.AsSpan(1).SequenceEqual(".2.2");
    }

    /// <summary>"5.1.1" of a status that may carry a comment ("5.1.1 (user unknown)").</summary>
    private static string CodeOf(string status) => status.Trim().Split([' ', '\t', '('], 2)[0];

    /// <summary>"5.1.1", from a Status field that may carry a comment ("5.1.1 (user unknown)"); null unless it is 2.x.x, 4.x.x or 5.x.x.</summary>
    private static string? StatusCode(string? field)
    {
        var code = CodeOf(field ?? "");
        var parts = code.Split('.');
        return parts.Length == 3 && parts[0] is "2" or "4" or "5" && parts.Skip(1).All(part => part.Length is >= 1 and <= 3 && part.All(char.IsAsciiDigit))
            ? code
            : null;
    }

    /// <summary>
    /// The address of a recipient field, "rfc822; someone@example.org", or null: also for one longer than any address can
    /// be (RFC 5321), which no subscriber has.
    /// </summary>
    private static string? Address(string? field)
    {
        if (string.IsNullOrWhiteSpace(field))
        {
            return null;
        }
        var separator = field.IndexOf(';', StringComparison.Ordinal);
        var address = field[(separator + 1)..].Trim().Trim('<', '>').Trim();
        return address.Contains('@', StringComparison.Ordinal) && address.Length <= EmailAddresses.MaxLength ? address : null;
    }
}
