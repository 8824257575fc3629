using MimeKit;

namespace Subscriptions.Email;

/// <summary>
/// A text part in UTF-8 whose content is in memory, in an array rented from the shared pool (returned when the message
/// is disposed, see <see cref="RentedBytesStream"/>): a digest's HTML and text.
/// </summary>
/// <remarks>
/// Its <see cref="Prepare"/> decides as MimeKit's does, but from the bytes where they are (<see cref="TransferEncodings.AsIs"/>)
/// when they can go as they are; MailKit prepares every message it sends, and MimeKit's check of a digest's two parts,
/// a byte at a time through a chain of streams, was ~5 % of the daily run's CPU. And content whose every line already
/// ends in CRLF is written as it is, in one write, where MimeKit writes any part through its line-end filter in 4 KB
/// blocks (another ~4 %). Anything else is left to MimeKit.
/// </remarks>
internal sealed class Utf8TextPart : TextPart
{
    public Utf8TextPart(string subtype, byte[] rented, int length) : base(subtype)
    {
        Content = new MimeContent(new RentedBytesStream(rented, length));
        ContentType.Charset = "utf-8";
    }

    public override void Prepare(EncodingConstraint constraint, int maxLineLength = 78)
    {
        if (ContentTransferEncoding is ContentEncoding.Default or ContentEncoding.SevenBit or ContentEncoding.EightBit
            && maxLineLength is >= 60 and <= TransferEncodings.SmtpMaxLineLength // MimeKit's bounds, which it checks itself
            && Content is { Encoding: ContentEncoding.Default, Stream: MemoryStream stream } && stream.TryGetBuffer(out var bytes)
            && TransferEncodings.AsIs(bytes, constraint, maxLineLength) is { } asIs)
        {
            // As MimePart.Prepare: a part with no encoding set that is 7-bit clean is left so.
            if (ContentTransferEncoding != ContentEncoding.Default || asIs != ContentEncoding.SevenBit)
            {
                ContentTransferEncoding = asIs;
            }
            return;
        }
        base.Prepare(constraint, maxLineLength);
    }

    public override void WriteTo(FormatOptions options, Stream stream, bool contentOnly, CancellationToken cancellationToken = default)
    {
        if (!GoesAsItIs(options, out var bytes))
        {
            base.WriteTo(options, stream, contentOnly, cancellationToken);
            return;
        }
        if (!contentOnly)
        {
            Headers.WriteTo(options, stream, cancellationToken);
        }
        if (stream is MimeKit.IO.ICancellableStream cancellable)
        {
            cancellable.Write(bytes.Array!, bytes.Offset, bytes.Count, cancellationToken);
        }
        else
        {
            cancellationToken.ThrowIfCancellationRequested();
            stream.Write(bytes);
        }
    }

    public override async Task WriteToAsync(FormatOptions options, Stream stream, bool contentOnly, CancellationToken cancellationToken = default)
    {
        if (!GoesAsItIs(options, out var bytes))
        {
            await base.WriteToAsync(options, stream, contentOnly, cancellationToken);
            return;
        }
        if (!contentOnly)
        {
            await Headers.WriteToAsync(options, stream, cancellationToken);
        }
        await stream.WriteAsync(bytes.Array!, bytes.Offset, bytes.Count, cancellationToken);
    }

    /// <summary>
    /// Whether MimeKit would write the content unchanged: it is in the part's transfer encoding already (as the DKIM signer
    /// leaves it, see <see cref="QuotedPrintable"/>) or needs none, the lines are to end in CRLF, and every LF already
    /// follows a CR (MimeKit's filter adds one where it does not, and a line break where the content ends without one).
    /// </summary>
    private bool GoesAsItIs(FormatOptions options, out ArraySegment<byte> bytes)
    {
        bytes = default;
        return options.NewLineFormat == NewLineFormat.Dos
            && Content is { Stream: MemoryStream stream } content
            && (content.Encoding == ContentTransferEncoding
                || (content.Encoding == ContentEncoding.Default && ContentTransferEncoding is ContentEncoding.SevenBit or ContentEncoding.EightBit))
            && stream.TryGetBuffer(out bytes) && bytes.Count > 0 && bytes[^1] == (byte)'\n' && EveryLineFeedFollowsCarriageReturn(bytes);
    }

    private static bool EveryLineFeedFollowsCarriageReturn(ReadOnlySpan<byte> content)
    {
        for (var at = content.IndexOf((byte)'\n'); at >= 0;)
        {
            if (at == 0 || content[at - 1] != (byte)'\r')
            {
                return false;
            }
            var next = content[(at + 1)..].IndexOf((byte)'\n');
            at = next < 0 ? -1 : at + 1 + next;
        }
        return true;
    }
}
