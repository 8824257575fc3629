using System.Buffers;

namespace Subscriptions.Email;

/// <summary>
/// A read-only stream over the first <c>length</c> bytes of an array rented from <see cref="ArrayPool{T}.Shared"/>, which
/// it returns when disposed: the content of an email's part, which MimeKit disposes with the message once it is sent.
/// Its buffer is visible (<see cref="MemoryStream.TryGetBuffer"/>), so that the DKIM signer reads the part where it is.
/// </summary>
/// <remarks>
/// A digest's two parts are ~22 KB a message, a fifth of what sending one allocated. A message left undisposed leaves
/// its array to the garbage collector, as an ordinary one.
/// </remarks>
internal sealed class RentedBytesStream(byte[] rented, int length) : MemoryStream(rented, 0, length, writable: false, publiclyVisible: true)
{
    private byte[]? _rented = rented;

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
