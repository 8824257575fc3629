using System.Buffers.Binary;
using System.Globalization;
using System.Security.Cryptography;
using System.Text;
using Microsoft.Extensions.Options;
using Subscriptions.Infrastructure;

namespace Subscriptions.Subscribers;

public enum LinkPurpose : byte
{
    Confirm = 1,
    Unsubscribe = 2,
    Preferences = 3,
    Feed = 4,
}

/// <summary>What a valid link names: a subscriber and the 128-bit random value the link was issued for.</summary>
internal readonly record struct LinkToken(long SubscriberId, byte[] Nonce);

/// <summary>
/// Links in emails carry <c>(purpose, subscriber id, nonce)</c> signed with HMAC-SHA256 under
/// <c>App:TokenSecret</c>. The nonce is random (128 bits) and stored with the subscriber, so a link
/// works only while the database still holds its nonce: confirmation links die when a fresh one is
/// sent, unsubscribe links when the person subscribes anew. The database holds nothing that can be
/// turned into a working link without the secret.
/// </summary>
internal sealed class LinkTokens(IOptions<AppOptions> options)
{
    public const int NonceLength = 16;
    private const byte FormatVersion = 1;
    private const int MacLength = 16;
    private const int PayloadLength = 1 + 1 + sizeof(long) + NonceLength;
    private const int TokenLength = PayloadLength + MacLength;

    private readonly HmacSha256 _hmac = new(Encoding.UTF8.GetBytes(options.Value.TokenSecret));
    private readonly AppOptions _app = options.Value;
    private readonly string _feedbackLinkStart = options.Value.Link("feedback?token=").AbsoluteUri;

    public static byte[] NewNonce() => RandomNumberGenerator.GetBytes(NonceLength);

    /// <summary>The full link of a purpose, as it goes into an email (<c>App:BaseUrl</c> + the purpose's route + token).</summary>
    public Uri Link(LinkPurpose purpose, long subscriberId, byte[] nonce) => Link(purpose, Create(purpose, subscriberId, nonce));

    /// <summary>The same, with the purpose's token already made (<see cref="Create"/>).</summary>
    public Uri Link(LinkPurpose purpose, string token)
    {
        var route = purpose switch
        {
            LinkPurpose.Confirm => "subscriptions/confirm",
            LinkPurpose.Unsubscribe => "unsubscribe",
            LinkPurpose.Preferences => "preferences",
            LinkPurpose.Feed => "feed",
            _ => throw new ArgumentOutOfRangeException(nameof(purpose)),
        };
        return _app.Link($"{route}?token={token}");
    }

    /// <summary>
    /// "More like this" (<paramref name="more"/>) or "less like this" for one paper: the preferences token, which already lets its
    /// holder change everything about the subscription, with the paper named beside it.
    /// </summary>
    /// <remarks>
    /// <paramref name="preferencesToken"/> is <see cref="Create"/>'s for <see cref="LinkPurpose.Preferences"/>: an email's papers all
    /// share one. The link is the absolute URI as text: a digest holds two per paper, and parsing each into a <see cref="Uri"/>
    /// only to print it again was ~2 % of sending. What follows the base URL (a base64url token and numbers) is as a URI prints it.
    /// </remarks>
    public string FeedbackLink(string preferencesToken, long paperId, bool more) =>
        string.Create(CultureInfo.InvariantCulture, $"{_feedbackLinkStart}{preferencesToken}&paper={paperId}&more={(more ? 1 : 0)}");

    public string Create(LinkPurpose purpose, long subscriberId, byte[] nonce)
    {
        if (nonce.Length != NonceLength)
        {
            throw new ArgumentException($"A link nonce is {NonceLength} bytes.", nameof(nonce));
        }
        Span<byte> token = stackalloc byte[TokenLength];
        token[0] = FormatVersion;
        token[1] = (byte)purpose;
        BinaryPrimitives.WriteInt64BigEndian(token[2..], subscriberId);
        nonce.CopyTo(token[(2 + sizeof(long))..]);
        Sign(token[..PayloadLength], token[PayloadLength..]);
        return Base64UrlEncode(token);
    }

    public bool TryRead(LinkPurpose purpose, string? text, out LinkToken token)
    {
        token = default;
        if (string.IsNullOrEmpty(text) || text.Length > 128)
        {
            return false;
        }
        // IsValid first: decoding malformed text throws rather than returning false.
        Span<byte> bytes = stackalloc byte[96];
        if (!System.Buffers.Text.Base64Url.IsValid(text, out var decodedLength) || decodedLength != TokenLength
            || !System.Buffers.Text.Base64Url.TryDecodeFromChars(text, bytes, out var length) || length != TokenLength)
        {
            return false;
        }
        bytes = bytes[..TokenLength];
        if (bytes[0] != FormatVersion || bytes[1] != (byte)purpose)
        {
            return false;
        }
        Span<byte> expected = stackalloc byte[MacLength];
        Sign(bytes[..PayloadLength], expected);
        if (!CryptographicOperations.FixedTimeEquals(expected, bytes[PayloadLength..]))
        {
            return false;
        }
        token = new LinkToken(
            BinaryPrimitives.ReadInt64BigEndian(bytes[2..]),
            bytes.Slice(2 + sizeof(long), NonceLength).ToArray());
        return true;
    }

    private void Sign(ReadOnlySpan<byte> payload, Span<byte> mac) => _hmac.Compute(payload, mac[..MacLength]);

    private static string Base64UrlEncode(ReadOnlySpan<byte> bytes) => System.Buffers.Text.Base64Url.EncodeToString(bytes);
}
