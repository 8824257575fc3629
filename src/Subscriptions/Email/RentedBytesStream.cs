using System.Buffers;

namespace Subscriptions.Email;

/// <summary>
/// A read-only stream over the first <c>length</c> bytes of an array rented from <see cref="ArrayPool{T}.Shared"/>, which
/// it returns when disposed: the content of an email's part, which MimeKit disposes with the message once it is sent.
/// Its buffer is visible (<see cref="MemoryStream.TryGetBuffer"/>), so that the DKIM signer reads the part where it is,
/// and the shape of its lines is read once (or given by whoever laid them out): the bytes never change.
/// </summary>
/// <remarks>
/// A digest's two parts are ~22 KB a message, a fifth of what sending one allocated. A message left undisposed leaves
/// its array to the garbage collector, as an ordinary one.
/// </remarks>
internal sealed class RentedBytesStream(byte[] rented, int length, LineShape? lines = null)
    : MemoryStream(rented, 0, length, writable: false, publiclyVisible: true)
{
    private byte[]? _rented = rented;
    private LineShape? _lines = lines;

    public LineShape Lines => _lines ??= LineShape.Of(GetBuffer().AsSpan(0, (int)Length));

    /// <summary>The shape of the lines of <paramref name="bytes"/>, the buffer of <paramref name="stream"/>: known, if it is one of these.</summary>
    public static LineShape LinesOf(Stream stream, ReadOnlySpan<byte> bytes) =>
        stream is RentedBytesStream rented ? rented.Lines : LineShape.Of(bytes);

    protected override void Dispose(bool disposing)
    {
        base.Dispose(disposing);
        // Rent(0) gives the shared empty array, which is not the pool's to take back.
        if (disposing && Interlocked.Exchange(ref _rented, null) is { Length: > 0 } array)
        {
            ArrayPool<byte>.Shared.Return(array);
        }
    }
}
