using System.Buffers;
using System.Globalization;
using Microsoft.Extensions.Options;
using MimeKit;
using MimeKit.Encodings;

namespace Subscriptions.Email;

/// <summary>
/// DKIM-signs each message as it leaves (when <c>Dkim:*</c> is set): rsa-sha256 or ed25519-sha256 as the key is,
/// relaxed/relaxed, over the identity, MIME and list headers the message has.
/// </summary>
/// <remarks>
/// The signature is made as MimeKit's <c>DkimSigner</c> makes it (the same tags, the header written and folded by
/// MimeKit, verified by MimeKit's verifier in the tests), but the canonicalization and hashing are our own: MimeKit's
/// signer hashes with BouncyCastle's managed SHA-256 and has no hook for a faster one (see
/// <see cref="RelaxedBodyHashStream"/>), and an RSA signature is the platform's (OpenSSL on Linux), which took
/// 0.3 ms a message here against 6.4 ms through BouncyCastle (see <see cref="DkimKey"/>).
/// </remarks>
internal sealed class DkimMessageSigner(IOptions<DkimOptions> options, TimeProvider time)
{
    // From is required by DKIM; the list headers must be covered for one-click unsubscribe (RFC 8058). Lower case, as the
    // h= tag lists them (MimeKit finds headers by name whatever the case).
    private static readonly string[] SignedHeaders =
    [
        "from", "sender", "reply-to", "to", "cc", "subject", "date", "message-id", "mime-version", "content-type",
        "content-transfer-encoding", "list-id", "list-unsubscribe", "list-unsubscribe-post",
    ];

    // Listed once more than the message has them (RFC 6376 §8.15): a verifier takes the extra name as an empty header, so
    // a copy of the email with one added (a Reply-To to someone else, a second List-Unsubscribe or Subject) fails.
    private static readonly string[] Oversigned =
    [
        "from", "sender", "reply-to", "to", "cc", "subject", "list-id", "list-unsubscribe", "list-unsubscribe-post",
    ];

    // As MimeKit's signer writes the body for its hash, and as MailKit sends a signed message: CRLF line ends,
    // headers as encoded words (MailKit turns SMTPUTF8 off for signed messages so that none is re-encoded).
    private static readonly FormatOptions Canonical = CreateCanonicalFormat();

    // Parts this size or smaller are read whole for the 7-bit check and the encoding (a digest's are ~15 KB); larger are
    // MimeKit's to prepare and encode as it writes.
    private const int MaxPartBytes = 1024 * 1024;

    // Loaded at the first message, not with the service: a bad key is reported by start-up validation.
    private readonly Lazy<DkimKey?> _key = new(() => Load(options.Value));

    public bool IsEnabled => options.Value.IsEnabled;

    public void Sign(MimeMessage message)
    {
        if (_key.Value is not { } key)
        {
            return;
        }
        var dkim = options.Value;
        // Signed as it will be sent: every part in 7-bit transfer encodings, so that no relay (nor MailKit,
        // for a server without 8BITMIME) re-encodes the body after the signature was computed.
        if (message.Body is { } entity)
        {
            // As MimeMessage.Prepare does (and its writer would, after the signature): MIME-Version is signed.
            if (message.MimeVersion is null && entity.Headers.Count > 0)
            {
                message.MimeVersion = new Version(1, 0);
            }
            PrepareSevenBit(entity);
        }
        message.Headers.RemoveAll(HeaderId.DkimSignature);

        string bodyHash;
        using (var body = new RelaxedBodyHashStream())
        {
            // A digest's parts write themselves without MimeKit's line-end filter (Utf8TextPart); the hash makes every
            // line end CRLF itself in any case.
            message.Body?.WriteTo(Canonical, body, contentOnly: true);
            bodyHash = Convert.ToBase64String(body.GetHashAndReset());
        }

        var signed = new ArrayBufferWriter<byte>(2048);
        var names = new List<string>(SignedHeaders.Length + Oversigned.Length);
        foreach (var name in SignedHeaders)
        {
            if (!dkim.SignDateAndMessageId && name is "date" or "message-id")
            {
                continue;
            }
            // MIME-Version is the message's; Content-Type and Content-Transfer-Encoding belong to its body.
            var headers = name.StartsWith("content-", StringComparison.Ordinal) ? message.Body?.Headers : message.Headers;
            // The physically last instance is the one a verifier takes for a name listed once (RFC 6376 §5.4.2).
            var index = headers?.LastIndexOf(name) ?? -1;
            if (index >= 0)
            {
                RelaxedHeaders.Write(signed, headers![index], last: false);
                names.Add(name);
            }
        }

        names.AddRange(Oversigned);

        var timestamp = time.GetUtcNow().ToUnixTimeSeconds();
        var signature = new Header(HeaderId.DkimSignature, string.Create(CultureInfo.InvariantCulture,
            $"v=1; a={key.Algorithm}; d={dkim.Domain}; s={dkim.Selector}; c=relaxed/relaxed; t={timestamp}; h={string.Join(':', names)}; bh={bodyHash}; b="));
        message.Headers.Insert(0, signature);
        RelaxedHeaders.Write(signed, signature, last: true);
        signature.Value += Convert.ToBase64String(key.Sign(signed.WrittenSpan));
    }

    /// <summary>
    /// As <c>MimeEntity.Prepare(EncodingConstraint.SevenBit, 998)</c> (lines up to SMTP's limit, as MailKit prepares a
    /// message; MimeKit's default of 78 would quoted-printable-encode the ASCII HTML too), and each part that needs a
    /// transfer encoding is encoded here, once.
    /// </summary>
    /// <remarks>
    /// Hand-written around MimeKit's own parts: its check of a part takes one byte at a time through a chain of streams
    /// (~25 µs a digest, most of it on the HTML, which is ASCII already), and a part's content is otherwise encoded each
    /// time the message is written: for the body hash, for SMTP's SIZE, and for the DATA. Here a text part's encoding is
    /// chosen by MimeKit's rule with vectorized searches (<see cref="TransferEncodings.SevenBit"/>); a part that is not text, or
    /// holds a NUL, is left to MimeKit's check; and a part that needs an encoding is encoded in one call (quoted-printable by
    /// <see cref="QuotedPrintable"/>, base64 by MimeKit's encoder).
    /// </remarks>
    private static void PrepareSevenBit(MimeEntity entity)
    {
        if (entity is Multipart multipart)
        {
            foreach (var child in multipart)
            {
                PrepareSevenBit(child);
            }
            return;
        }
        if (entity is not MimePart { Content: { } content } part || content.Encoding != ContentEncoding.Default
            || content.Stream is not { CanSeek: true, Length: <= MaxPartBytes } stream)
        {
            entity.Prepare(EncodingConstraint.SevenBit, TransferEncodings.SmtpMaxLineLength);
            return;
        }
        // A part in memory (the digest's are) is read where it is; any other stream is copied out once.
        byte[]? copy = null;
        if (stream is not MemoryStream memory || !memory.TryGetBuffer(out var bytes))
        {
            var length = (int)stream.Length;
            copy = ArrayPool<byte>.Shared.Rent(length);
            stream.Position = 0;
            stream.ReadExactly(copy, 0, length);
            stream.Position = 0;
            bytes = new ArraySegment<byte>(copy, 0, length);
        }
        try
        {
            if (part.ContentTransferEncoding is ContentEncoding.Default or ContentEncoding.SevenBit or ContentEncoding.EightBit
                && part.ContentType.IsMimeType("text", "*") && TransferEncodings.SevenBit(bytes, RentedBytesStream.LinesOf(stream, bytes)) is { } best)
            {
                if (best != ContentEncoding.SevenBit || part.ContentTransferEncoding == ContentEncoding.EightBit)
                {
                    part.ContentTransferEncoding = best;
                }
                if (best == ContentEncoding.SevenBit)
                {
                    return;
                }
            }
            else
            {
                part.Prepare(EncodingConstraint.SevenBit, TransferEncodings.SmtpMaxLineLength);
            }
            byte[] encoded;
            int written;
            switch (part.ContentTransferEncoding)
            {
                case ContentEncoding.QuotedPrintable:
                    encoded = ArrayPool<byte>.Shared.Rent(QuotedPrintable.MaxEncodedLength(bytes.Count));
                    written = QuotedPrintable.Encode(bytes, encoded);
                    break;
                case ContentEncoding.Base64:
                    var base64 = new Base64Encoder();
                    encoded = ArrayPool<byte>.Shared.Rent(base64.EstimateOutputLength(bytes.Count));
                    written = base64.Flush(bytes.Array!, bytes.Offset, bytes.Count, encoded);
                    break;
                default:
                    return;
            }
            // The content replaced is disposed (after the encoding, which may have read its buffer): MimeKit's contents have
            // finalizers, and one left to it outlives a collection.
            using var decoded = part.Content;
            // The encoded array goes back to the pool with the message.
            part.Content = new MimeContent(new RentedBytesStream(encoded, written), part.ContentTransferEncoding);
        }
        finally
        {
            if (copy is not null)
            {
                ArrayPool<byte>.Shared.Return(copy);
            }
        }
    }

    private static DkimKey? Load(DkimOptions dkim) =>
        !dkim.IsEnabled ? null
        : DkimKey.Load(dkim.PrivateKeyPath!, out var problem) ?? throw new InvalidOperationException($"Dkim:PrivateKeyPath {problem}");

    private static FormatOptions CreateCanonicalFormat()
    {
        var format = FormatOptions.Default.Clone();
        format.NewLineFormat = NewLineFormat.Dos;
        format.EnsureNewLine = true;
        return format;
    }
}
