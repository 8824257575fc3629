using MimeKit;

namespace Subscriptions.Email;

/// <summary>
/// A text part in UTF-8 whose content is in memory, in an array rented from the shared pool (returned when the message
/// is disposed, see <see cref="RentedBytesStream"/>): a digest's HTML and text.
/// </summary>
/// <remarks>
/// Its <see cref="Prepare"/> decides as MimeKit's does, but from the bytes where they are (<see cref="TransferEncodings.AsIs"/>)
/// when they can go as they are; MailKit prepares every message it sends, and MimeKit's check of a digest's two parts,
/// a byte at a time through a chain of streams, was ~5 % of the daily run's CPU. Anything else is left to MimeKit.
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
}
