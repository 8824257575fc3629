using System.Security.Cryptography;
using Microsoft.Extensions.ObjectPool;

namespace Subscriptions.Infrastructure;

/// <summary>
/// HMAC-SHA256 under one key, for MACs computed many times a second: each digest signs three links and its Message-ID.
/// </summary>
/// <remarks>
/// <see cref="HMACSHA256.HashData(ReadOnlySpan{byte}, ReadOnlySpan{byte}, Span{byte})"/> sets OpenSSL's context up with the
/// key on every call: 2.2 µs a MAC on the development machine, against 0.9 µs for an <see cref="IncrementalHash"/> keyed
/// once and reset after each MAC. The framework has no keyed HMAC that can be shared between threads, so the keyed
/// instances are pooled here, one per thread at a time.
/// </remarks>
internal sealed class HmacSha256(byte[] key)
{
    // The provider's pool of a disposable type disposes what it does not keep (more at once than it holds), rather than
    // leaving OpenSSL's contexts to the finalizer.
    private readonly ObjectPool<IncrementalHash> _keyed = new DefaultObjectPoolProvider().Create(new KeyedPolicy(key));

    /// <summary>
    /// Writes the MAC of <paramref name="data"/> to <paramref name="mac"/>, truncated to its length (its leftmost bytes,
    /// RFC 2104 section 5): the links keep 16 bytes, the Message-IDs 6.
    /// </summary>
    public void Compute(ReadOnlySpan<byte> data, Span<byte> mac)
    {
        Span<byte> full = stackalloc byte[HMACSHA256.HashSizeInBytes];
        var hmac = _keyed.Get();
        hmac.AppendData(data);
        hmac.GetHashAndReset(full);
        _keyed.Return(hmac);
        full[..mac.Length].CopyTo(mac);
    }

    private sealed class KeyedPolicy(byte[] key) : PooledObjectPolicy<IncrementalHash>
    {
        public override IncrementalHash Create() => IncrementalHash.CreateHMAC(HashAlgorithmName.SHA256, key);

        public override bool Return(IncrementalHash hmac) => true;
    }
}
