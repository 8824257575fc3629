using System.Buffers;
using System.Text;
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
    public Utf8TextPart(string subtype, byte[] rented, int length) : this(subtype, new RentedBytesStream(rented, length))
    {
    }

    private Utf8TextPart(string subtype, RentedBytesStream content) : base(subtype)
    {
        Content = new MimeContent(content);
        ContentType.Charset = "utf-8";
    }

    /// <summary>
    /// The part of a text built in <paramref name="text"/> (a digest's text or HTML), encoded straight from the builder:
    /// no string of the whole text, and no copy of it into MimeKit's own stream (a digest's strings, buffers and copies
    /// were most of the ~220 KB each email allocated). Each line ends in CRLF, as on the wire, so that the part is written
    /// as it is; and the shape of the lines is taken as they are laid out, so that neither MailKit's preparation nor the
    /// writer reads them again.
    /// </summary>
    public static Utf8TextPart FromText(string subtype, StringBuilder text)
    {
        var lineFeeds = 0;
        foreach (var chunk in text.GetChunks())
        {
            lineFeeds += chunk.Span.Count('\n');
        }
        // The text is encoded a CR's room per LF into an array that can hold it all (the pool's, back to it when the
        // message is disposed), in a few calls; its lines are then moved down one by one, each given the CR it lacks
        // (an LF is one byte in UTF-8, and never part of another character's bytes).
        var bytes = ArrayPool<byte>.Shared.Rent(lineFeeds + Encoding.UTF8.GetMaxByteCount(text.Length));
        var encoder = Encoding.UTF8.GetEncoder(); // keeps a surrogate pair split across two chunks whole
        var end = lineFeeds;
        foreach (var chunk in text.GetChunks())
        {
            end += encoder.GetBytes(chunk.Span, bytes.AsSpan(end), flush: false);
        }
        end += encoder.GetBytes([], bytes.AsSpan(end), flush: true);

        var lines = new LineShape.Builder();
        var written = 0;
        for (var read = lineFeeds; ;)
        {
            var rest = bytes.AsSpan(read, end - read);
            var lineFeed = rest.IndexOf((byte)'\n');
            var line = lineFeed < 0 ? rest : rest[..lineFeed];
            line.CopyTo(bytes.AsSpan(written));
            var start = written;
            written += line.Length;
            if (lineFeed < 0)
            {
                lines.Add(bytes.AsSpan(start, written - start), lineFeed: false);
                break;
            }
            if (!line.EndsWith((byte)'\r'))
            {
                bytes[written++] = (byte)'\r';
            }
            lines.Add(bytes.AsSpan(start, written - start), lineFeed: true);
            bytes[written++] = (byte)'\n';
            read += lineFeed + 1;
        }
        return new Utf8TextPart(subtype, new RentedBytesStream(bytes, written, lines.Shape));
    }

    public override void Prepare(EncodingConstraint constraint, int maxLineLength = 78)
    {
        if (ContentTransferEncoding is ContentEncoding.Default or ContentEncoding.SevenBit or ContentEncoding.EightBit
            && maxLineLength is >= 60 and <= TransferEncodings.SmtpMaxLineLength // MimeKit's bounds, which it checks itself
            && Content is { Encoding: ContentEncoding.Default, Stream: MemoryStream stream } && stream.TryGetBuffer(out var bytes)
            && TransferEncodings.AsIs(bytes, RentedBytesStream.LinesOf(stream, bytes), constraint, maxLineLength) is { } asIs)
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
            && stream.TryGetBuffer(out bytes) && bytes.Count > 0 && bytes[^1] == (byte)'\n' && RentedBytesStream.LinesOf(stream, bytes).CrLf;
    }
}
