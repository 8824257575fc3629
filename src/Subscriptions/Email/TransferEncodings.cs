using MimeKit;

namespace Subscriptions.Email;

/// <summary>
/// The transfer encoding MimeKit's check (<c>BestEncodingFilter</c>) chooses for text content, found with vectorized
/// searches. MimeKit's check takes the content one byte at a time through a chain of streams, each time a message is
/// prepared: for the DKIM signature, and again by MailKit for every message it sends (~20 µs a digest).
/// </summary>
internal static class TransferEncodings
{
    /// <summary>A line's most, not counting its CRLF (RFC 5322 §2.1.1): what MailKit's <c>SmtpClient</c> prepares a message for.</summary>
    public const int SmtpMaxLineLength = 998;

    /// <summary>
    /// Under a 7-bit constraint, lines up to 998: as it is when there is no NUL, nothing above ASCII, no line longer than
    /// 998 (not counting its CR) and no line starting <c>From </c> (which MimeKit quotes for mbox); base64 when 17 % of the
    /// bytes or more are above ASCII; else quoted-printable (also for a last line that starts <c>From </c> without a line
    /// break after it, which MimeKit's check would pass). Null, for MimeKit to decide, when there is a NUL.
    /// </summary>
    public static ContentEncoding? SevenBit(ReadOnlySpan<byte> content)
    {
        if (content.Contains((byte)0))
        {
            return null;
        }
        if (!System.Text.Ascii.IsValid(content))
        {
            // Counted by a search from one to the next (a digest's text has few), up to as many as decide it.
            var threshold = (int)(content.Length * (17.0 / 100.0));
            var above = 0;
            for (var rest = content; above < threshold; above++)
            {
                var next = rest.IndexOfAnyInRange((byte)0x80, (byte)0xFF);
                if (next < 0)
                {
                    break;
                }
                rest = rest[(next + 1)..];
            }
            return above >= threshold ? ContentEncoding.Base64 : ContentEncoding.QuotedPrintable;
        }
        return LongLineOrMarker(content, SmtpMaxLineLength) ? ContentEncoding.QuotedPrintable : ContentEncoding.SevenBit;
    }

    /// <summary>
    /// 7bit or 8bit when MimeKit's check would let the content go as it is under <paramref name="constraint"/> with lines
    /// up to <paramref name="maxLineLength"/>: no NUL, no longer line, no line starting <c>From </c>, and nothing above
    /// ASCII unless 8-bit is allowed. Null otherwise, for MimeKit to choose the encoding.
    /// </summary>
    public static ContentEncoding? AsIs(ReadOnlySpan<byte> content, EncodingConstraint constraint, int maxLineLength)
    {
        if (constraint is not (EncodingConstraint.SevenBit or EncodingConstraint.EightBit)
            || content.Contains((byte)0) || LongLineOrMarker(content, maxLineLength))
        {
            return null;
        }
        if (System.Text.Ascii.IsValid(content))
        {
            return ContentEncoding.SevenBit;
        }
        return constraint == EncodingConstraint.EightBit ? ContentEncoding.EightBit : null;
    }

    /// <summary>A line longer than <paramref name="maxLineLength"/> (a line break's CR not counted), or one that starts <c>From </c>.</summary>
    private static bool LongLineOrMarker(ReadOnlySpan<byte> content, int maxLineLength)
    {
        for (var rest = content; ;)
        {
            var end = rest.IndexOf((byte)'\n');
            // MimeKit counts a CR only where it ends a line before its LF.
            var line = end < 0 ? rest : rest[..end];
            if (line.StartsWith("From "u8) || line.Length - (end >= 0 && line.EndsWith((byte)'\r') ? 1 : 0) > maxLineLength)
            {
                return true;
            }
            if (end < 0)
            {
                return false;
            }
            rest = rest[(end + 1)..];
        }
    }
}
