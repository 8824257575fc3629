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
    public static ContentEncoding? SevenBit(ReadOnlySpan<byte> content, LineShape lines)
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
        return lines.Fits(SmtpMaxLineLength) ? ContentEncoding.SevenBit : ContentEncoding.QuotedPrintable;
    }

    /// <summary>
    /// 7bit or 8bit when MimeKit's check would let the content go as it is under <paramref name="constraint"/> with lines
    /// up to <paramref name="maxLineLength"/>: no NUL, no longer line, no line starting <c>From </c>, and nothing above
    /// ASCII unless 8-bit is allowed. Null otherwise, for MimeKit to choose the encoding.
    /// </summary>
    public static ContentEncoding? AsIs(ReadOnlySpan<byte> content, LineShape lines, EncodingConstraint constraint, int maxLineLength)
    {
        if (constraint is not (EncodingConstraint.SevenBit or EncodingConstraint.EightBit)
            || content.Contains((byte)0) || !lines.Fits(maxLineLength))
        {
            return null;
        }
        if (System.Text.Ascii.IsValid(content))
        {
            return ContentEncoding.SevenBit;
        }
        return constraint == EncodingConstraint.EightBit ? ContentEncoding.EightBit : null;
    }
}

/// <summary>
/// What MimeKit's check of a content and its writer ask of the content's lines, found in one pass: the longest line's
/// length (a CR that ends it before its LF not counted, as MimeKit counts), whether a line starts <c>From </c> (which
/// MimeKit quotes for mbox), and whether every LF follows a CR (so that a writer of CRLF lines has nothing to add).
/// </summary>
internal readonly record struct LineShape(int Longest, bool FromLine, bool CrLf)
{
    public static LineShape Of(ReadOnlySpan<byte> content)
    {
        var shape = new Builder();
        for (var rest = content; ;)
        {
            var end = rest.IndexOf((byte)'\n');
            if (end < 0)
            {
                shape.Add(rest, lineFeed: false);
                return shape.Shape;
            }
            shape.Add(rest[..end], lineFeed: true);
            rest = rest[(end + 1)..];
        }
    }

    /// <summary>Whether MimeKit's check would let the lines go as they are, up to <paramref name="maxLineLength"/>.</summary>
    public bool Fits(int maxLineLength) => !FromLine && Longest <= maxLineLength;

    /// <summary>The shape of lines taken one by one, in order.</summary>
    public struct Builder()
    {
        public LineShape Shape { get; private set; } = new(0, false, true);

        /// <summary>Adds a line, without its LF (<paramref name="lineFeed"/> says whether one ends it).</summary>
        public void Add(ReadOnlySpan<byte> line, bool lineFeed)
        {
            var endsInCr = line.EndsWith((byte)'\r');
            Shape = new(Math.Max(Shape.Longest, line.Length - (lineFeed && endsInCr ? 1 : 0)),
                Shape.FromLine || line.StartsWith("From "u8), Shape.CrLf && (endsInCr || !lineFeed));
        }
    }
}
