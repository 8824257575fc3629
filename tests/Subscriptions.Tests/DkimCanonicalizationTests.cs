using System.Buffers;
using System.Security.Cryptography;
using System.Text;
using Microsoft.Extensions.Options;
using MimeKit;
using MimeKit.Cryptography;
using Org.BouncyCastle.Security;
using Subscriptions.Email;

namespace Subscriptions.Tests;

/// <summary>
/// Our DKIM canonicalization and hashing against the RFC's example and MimeKit's own signer: the same body hash for
/// bodies whose whitespace, line ends and encodings differ, and a signature MimeKit's verifier accepts.
/// </summary>
public sealed class DkimCanonicalizationTests : IDisposable
{
    private readonly RSA _key = RSA.Create(2048);
    private readonly string _directory = Directory.CreateTempSubdirectory("subscriptions-dkim-canonical-").FullName;

    public void Dispose()
    {
        _key.Dispose();
        Directory.Delete(_directory, recursive: true);
    }

    [Fact]
    public void TheBodyOfRfc6376sExampleCanonicalizesAsTheRfcSays()
    {
        // RFC 6376 §3.4.5: the relaxed body is " C" CRLF "D E" CRLF.
        var body = " C \r\nD \t E\r\n\r\n\r\n"u8.ToArray();
        var expected = SHA256.HashData(" C\r\nD E\r\n"u8);

        using var whole = new RelaxedBodyHashStream();
        whole.Write(body);
        Assert.Equal(expected, whole.GetHashAndReset());

        // Written a byte at a time, a CRLF split between writes still ends one line.
        using var bytes = new RelaxedBodyHashStream();
        foreach (var b in body)
        {
            bytes.Write([b]);
        }
        Assert.Equal(expected, bytes.GetHashAndReset());

        // Bare LFs are line ends as CRLFs are; an empty body hashes as empty.
        bytes.Write(" C \nD \t E\n\n"u8);
        Assert.Equal(expected, bytes.GetHashAndReset());
        Assert.Equal(SHA256.HashData([]), bytes.GetHashAndReset());
    }

    [Fact]
    public void TheHeadersOfRfc6376sExampleCanonicalizeAsTheRfcSays()
    {
        using var block = new MemoryStream("A: X\r\nB: Y\t\r\n\tZ  \r\n\r\n"u8.ToArray());
        var headers = HeaderList.Load(block);
        var output = new ArrayBufferWriter<byte>();
        RelaxedHeaders.Write(output, headers[0], last: false);
        RelaxedHeaders.Write(output, headers[1], last: true);

        Assert.Equal("a:X\r\nb:Y Z", Encoding.ASCII.GetString(output.WrittenSpan));
    }

    public static TheoryData<string, string> Bodies => new()
    {
        { "lines", "Line one\nLine two\n" },
        { "whitespace", "  leading spaces\tand\t\ttabs  \ntrailing   \n \t \nafter a blank line\n\n\n\n" },
        { "empty lines first", "\n\n\nthen text\n\n\nin the middle" },
        { "no line break at the end", "no line break at the end" },
        { "windows line ends", "one\r\ntwo  \r\n\r\n" },
        { "non-ASCII and a long line", "naïve — encoded as quoted-printable \n" + string.Concat(Enumerable.Repeat("a long line ", 40)) + "\n" },
        { "long ASCII lines, sent as they are", string.Concat(Enumerable.Repeat("word  word\tword ", 20)) + " \nx y  z \t\n  \n" },
        { "html and text", "multipart" },
    };

    public static TheoryData<string, string> Contents => new()
    {
        { "ASCII lines", "<p>one</p>\n<p>two</p>\n" },
        { "a line of 998", new string('a', 998) + "\n" },
        { "a line of 998 and its CR", new string('a', 998) + "\r\nend\r\n" },
        { "a line of 999", new string('a', 999) + "\n" },
        { "a last line of 999 without its line break", "first\n" + new string('a', 999) },
        { "an mbox From line", "first\nFrom here on\n" },
        { "a NUL", "a\0b\n" },
        { "a few non-ASCII", "naïve — " + new string('a', 200) + "\n" },
        { "16 % non-ASCII", string.Concat(Enumerable.Repeat("ä", 8)) + new string('a', 83) + "\n" },
        { "18 % non-ASCII", string.Concat(Enumerable.Repeat("ä", 9)) + new string('a', 81) + "\n" },
        { "mostly non-ASCII", "日本語のテキスト\n" },
    };

    [Theory]
    [MemberData(nameof(Contents))]
    public void ATextPartIsEncodedAsMimeKitChooses(string name, string text)
    {
        var part = new TextPart("plain") { Text = text };
        var mimeKits = part.GetBestEncoding(EncodingConstraint.SevenBit, 998);
        var bytes = Encoding.UTF8.GetBytes(text);
        Assert.Equal(mimeKits, TransferEncodings.SevenBit(bytes, LineShape.Of(bytes)) ?? mimeKits);

        var message = Message(part, name);
        Signer().Sign(message);

        Assert.Equal(mimeKits, part.ContentTransferEncoding is ContentEncoding.Default ? ContentEncoding.SevenBit : part.ContentTransferEncoding);
        Assert.Equal(text.ReplaceLineEndings("\n"), Reparse(message).TextBody!.ReplaceLineEndings("\n"));
    }

    [Fact]
    public void ATextPartMarked8BitThatIs7BitCleanIsMarked7Bit()
    {
        var part = new TextPart("plain") { Text = "Line one\nLine two\n", ContentTransferEncoding = ContentEncoding.EightBit };
        var message = Message(part);

        Signer().Sign(message);

        Assert.Equal(ContentEncoding.SevenBit, part.ContentTransferEncoding);
    }

    [Fact]
    public void AnAsciiPartWithLinesLongerThan78IsSignedAsItIsNotQuotedPrintable()
    {
        var html = "<p>" + string.Concat(Enumerable.Repeat("a line longer than MIME's 78 but within SMTP's 998 ", 10)) + "</p>\n";
        var message = Message(new BodyBuilder { TextBody = "Trending — today\n", HtmlBody = html }.ToMessageBody());

        Signer().Sign(message);

        var parts = message.BodyParts.OfType<TextPart>().ToList();
        Assert.Contains(parts.Single(p => p.IsPlain).ContentTransferEncoding, new[] { ContentEncoding.QuotedPrintable, ContentEncoding.Base64 });
        var htmlPart = parts.Single(p => p.IsHtml);
        Assert.NotEqual(ContentEncoding.QuotedPrintable, htmlPart.ContentTransferEncoding);
        Assert.Equal(html, htmlPart.Text);
    }

    [Theory]
    [MemberData(nameof(Bodies))]
    public async Task OurBodyHashIsMimeKitsAndOurSignatureVerifies(string name, string text)
    {
        var message = new MimeMessage
        {
            Subject = "Déjà vu — " + string.Concat(Enumerable.Repeat("a subject long enough to be folded ", 3)),
            Date = new DateTimeOffset(2026, 11, 26, 6, 0, 0, TimeSpan.Zero),
            MessageId = $"{name.Replace(' ', '-')}@subscriptions.test",
            Body = name == "html and text"
                ? new BodyBuilder { TextBody = "Trending — today\n\n1. A paper  \n", HtmlBody = "<p>Trending &#8212; today</p>\n\n\n" }.ToMessageBody()
                : new TextPart("plain") { Text = text },
        };
        message.From.Add(new MailboxAddress("Trending Papers", "papers@subscriptions.test"));
        message.To.Add(new MailboxAddress("Reader", "reader@example.org"));
        message.Headers.Add("List-Unsubscribe", "<https://papers.subscriptions.test/unsubscribe?token=abc>");
        message.Headers.Add("List-Unsubscribe-Post", "List-Unsubscribe=One-Click");

        Signer().Sign(message);
        var ours = message.Headers[HeaderId.DkimSignature]!;
        var signed = Reparse(message);
        var locator = new DkimTests.PublishedKeyLocator(new RsaDkimKey(_key).DnsRecordValue);
        Assert.True(await new DkimVerifier(locator).VerifyAsync(signed, signed.Headers[signed.Headers.IndexOf(HeaderId.DkimSignature)]),
            "Our signature should verify.");

        message.Headers.RemoveAll(HeaderId.DkimSignature);
        var mimeKits = new DkimSigner(DotNetUtilities.GetRsaKeyPair(_key).Private, "subscriptions.test", "papers2026")
        {
            HeaderCanonicalizationAlgorithm = DkimCanonicalizationAlgorithm.Relaxed,
            BodyCanonicalizationAlgorithm = DkimCanonicalizationAlgorithm.Relaxed,
        };
        mimeKits.Sign(message, ["From", "To", "Subject"]);
        Assert.Equal(Tag(message.Headers[HeaderId.DkimSignature]!, "bh"), Tag(ours, "bh"));
    }

    /// <summary>A message from the signing domain with <paramref name="body"/>, for tests of how its body is prepared.</summary>
    private static MimeMessage Message(MimeEntity body, string subject = "")
    {
        var message = new MimeMessage { Subject = subject, Body = body };
        message.From.Add(new MailboxAddress("Trending Papers", "papers@subscriptions.test"));
        return message;
    }

    private DkimMessageSigner Signer()
    {
        var keyPath = Path.Combine(_directory, "dkim.pem");
        File.WriteAllText(keyPath, _key.ExportRSAPrivateKeyPem());
        return new DkimMessageSigner(
            Options.Create(new DkimOptions { Domain = "subscriptions.test", Selector = "papers2026", PrivateKeyPath = keyPath }), TimeProvider.System);
    }

    /// <summary>The message as MailKit sends a signed one (CRLF, no SMTPUTF8), parsed again.</summary>
    private static MimeMessage Reparse(MimeMessage message)
    {
        var wire = FormatOptions.Default.Clone();
        wire.NewLineFormat = NewLineFormat.Dos;
        wire.EnsureNewLine = true;
        using var stream = new MemoryStream();
        message.WriteTo(wire, stream);
        stream.Position = 0;
        return MimeMessage.Load(stream);
    }

    private static string Tag(string signature, string name) =>
        signature.Split(';', StringSplitOptions.TrimEntries).Single(tag => tag.StartsWith(name + "=", StringComparison.Ordinal))[(name.Length + 1)..];
}
