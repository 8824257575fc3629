using System.Buffers;
using System.Text;
using Microsoft.Extensions.Configuration;
using MimeKit;
using Subscriptions.Digest;
using Subscriptions.Email;
using Subscriptions.Papers;
using Subscriptions.Subscribers;

namespace Subscriptions.Tests;

/// <summary>
/// A digest's parts (<see cref="Utf8TextPart"/>) choose their transfer encoding from their bytes, not through MimeKit's
/// check, and write content whose lines end in CRLF as it is: the same choice and the same bytes as MimeKit's own text
/// part, under each constraint and line length it is prepared for.
/// </summary>
public sealed class TransferEncodingTests
{
    public static TheoryData<string, string, EncodingConstraint, int> Preparations()
    {
        var contents = new Dictionary<string, string>
        {
            ["empty"] = "",
            ["ASCII lines"] = "<p>one</p>\n<p>two</p>\n",
            ["CRLF lines"] = "one\r\ntwo\r\n\r\n",
            ["a line of 998"] = new string('a', 998) + "\n",
            ["a line of 998 and its CR"] = new string('a', 998) + "\r\nend\r\n",
            ["a line of 999"] = new string('a', 999) + "\n",
            ["a last line of 998 and a CR, without its line break"] = "first\n" + new string('a', 998) + "\r",
            ["a last line of 999 without its line break"] = "first\n" + new string('a', 999),
            ["a line of 78"] = new string('a', 78) + "\n",
            ["a line of 79"] = new string('a', 79) + "\n",
            ["an mbox From line"] = "first\nFrom here on\n",
            ["a last From line without its line break"] = "first\nFrom here",
            ["From, not at a line's start"] = "first\n From here\n",
            ["a NUL"] = "a\0b\n",
            ["a few non-ASCII"] = "naïve — " + new string('a', 200) + "\n",
            ["18 % non-ASCII"] = string.Concat(Enumerable.Repeat("ä", 9)) + new string('a', 81) + "\n",
            ["non-ASCII and a long line"] = "naïve\n" + new string('a', 1200) + "\n",
            ["mostly non-ASCII"] = "日本語のテキスト\n",
        };
        var data = new TheoryData<string, string, EncodingConstraint, int>();
        foreach (var (name, text) in contents)
        {
            foreach (var constraint in new[] { EncodingConstraint.SevenBit, EncodingConstraint.EightBit, EncodingConstraint.None })
            {
                data.Add(name, text, constraint, TransferEncodings.SmtpMaxLineLength);
                data.Add(name, text, constraint, 78);
            }
        }
        return data;
    }

    [Theory]
    [MemberData(nameof(Preparations))]
    public void ADigestPartIsPreparedAsMimeKitPreparesItsOwn(string name, string text, EncodingConstraint constraint, int maxLineLength)
    {
        using var mimeKits = new TextPart("plain") { Text = text };
        using var ours = DigestPart(text);

        mimeKits.Prepare(constraint, maxLineLength);
        ours.Prepare(constraint, maxLineLength);

        Assert.True(mimeKits.ContentTransferEncoding == ours.ContentTransferEncoding,
            $"{name}: MimeKit chose {mimeKits.ContentTransferEncoding}, the digest part {ours.ContentTransferEncoding}");
        Assert.Equal(WrittenAsMimeKit(mimeKits), WrittenAsMimeKit(ours));
    }

    [Theory]
    [InlineData(ContentEncoding.SevenBit)]
    [InlineData(ContentEncoding.EightBit)]
    public void APartAlreadyMarkedIsMarkedAsMimeKitWouldMarkIt(ContentEncoding marked)
    {
        foreach (var text in new[] { "plain ASCII\n", "naïve\n" })
        {
            using var mimeKits = new TextPart("plain") { Text = text, ContentTransferEncoding = marked };
            using var ours = DigestPart(text);
            ours.ContentTransferEncoding = marked;

            mimeKits.Prepare(EncodingConstraint.EightBit, TransferEncodings.SmtpMaxLineLength);
            ours.Prepare(EncodingConstraint.EightBit, TransferEncodings.SmtpMaxLineLength);

            Assert.Equal(mimeKits.ContentTransferEncoding, ours.ContentTransferEncoding);
        }
    }

    public static TheoryData<string, string> Writings() => new()
    {
        { "CRLF lines", "one\r\ntwo\r\n\r\n" },
        { "LF lines", "one\ntwo\n\n" },
        { "mixed line ends", "one\r\ntwo\nthree\r\n" },
        { "an LF first", "\none\r\n" },
        { "a bare CR", "one\rtwo\r\n" },
        { "no line break at the end", "one\r\ntwo" },
        { "a CR at the end", "one\r\ntwo\r" },
        { "non-ASCII", "naïve — déjà vu\r\n" },
        { "empty", "" },
    };

    [Theory]
    [MemberData(nameof(Writings))]
    public async Task ADigestPartIsWrittenAsMimeKitWritesItsOwn(string name, string text)
    {
        foreach (var newLines in new[] { NewLineFormat.Dos, NewLineFormat.Unix })
        {
            var format = FormatOptions.Default.Clone();
            format.NewLineFormat = newLines;
            using var ours = DigestPart(text);
            using var mimeKits = new TextPart("plain") { Content = new MimeContent(new MemoryStream(Encoding.UTF8.GetBytes(text))) };
            mimeKits.ContentType.Charset = "utf-8";
            ours.Prepare(EncodingConstraint.EightBit, TransferEncodings.SmtpMaxLineLength);
            mimeKits.Prepare(EncodingConstraint.EightBit, TransferEncodings.SmtpMaxLineLength);

            foreach (var contentOnly in new[] { false, true })
            {
                var expected = Written(stream => mimeKits.WriteTo(format, stream, contentOnly));
                Assert.True(expected == Written(stream => ours.WriteTo(format, stream, contentOnly)), $"{name}, {newLines}, written");
                using var asynchronously = new MemoryStream();
                await ours.WriteToAsync(format, asynchronously, contentOnly);
                Assert.True(expected == Encoding.UTF8.GetString(asynchronously.ToArray()), $"{name}, {newLines}, written asynchronously");
            }
        }
    }

    [Fact]
    public async Task AnEncodedPartIsWrittenAsMimeKitWritesItsOwn()
    {
        // As the DKIM signer leaves a text part: its content replaced by our quoted-printable encoding, lines ending in CRLF.
        var text = Encoding.UTF8.GetBytes("naïve — déjà vu\n" + new string('a', 100) + " \nlast");
        var encoded = new byte[QuotedPrintable.MaxEncodedLength(text.Length)];
        var length = QuotedPrintable.Encode(text, encoded);
        using var ours = DigestPart("");
        using var mimeKits = new TextPart("plain");
        mimeKits.ContentType.Charset = "utf-8";
        foreach (var part in new TextPart[] { ours, mimeKits })
        {
            part.Content = new MimeContent(new MemoryStream(encoded, 0, length, writable: false, publiclyVisible: true), ContentEncoding.QuotedPrintable);
            part.ContentTransferEncoding = ContentEncoding.QuotedPrintable;
        }
        var wire = FormatOptions.Default.Clone();
        wire.NewLineFormat = NewLineFormat.Dos;

        var expected = Written(stream => mimeKits.WriteTo(wire, stream));
        Assert.Equal(expected, Written(stream => ours.WriteTo(wire, stream)));
        using var asynchronously = new MemoryStream();
        await ours.WriteToAsync(wire, asynchronously);
        Assert.Equal(expected, Encoding.UTF8.GetString(asynchronously.ToArray()));
    }

    public static TheoryData<string, string> Texts()
    {
        var texts = new TheoryData<string, string>();
        foreach (var row in Preparations().Concat(Writings()).DistinctBy(row => (string)row[0]))
        {
            texts.Add((string)row[0], (string)row[1]);
        }
        texts.Add("a surrogate pair across chunks", "abc𝛼 and a 𝛽\n"); // the builder's first chunk ends after "abc" and 𝛼's first half
        return texts;
    }

    [Theory]
    [MemberData(nameof(Texts))]
    public async Task APartLaidOutFromATextIsPreparedAndWrittenAsMimeKitsOwn(string name, string text)
    {
        // Appended a character or two at a time into a builder that starts small: its text is in many chunks, some of
        // which end between a CR and its LF or between the halves of a surrogate pair.
        var builder = new StringBuilder(4);
        for (var i = 0; i < text.Length; i += 2)
        {
            builder.Append(text.AsSpan(i, Math.Min(2, text.Length - i)));
        }
        var chunks = 0;
        foreach (var _ in builder.GetChunks())
        {
            chunks++;
        }
        Assert.True(chunks > 1 || text.Length <= 4, $"{name}: one chunk");
        if (name == "a surrogate pair across chunks")
        {
            var first = builder.GetChunks().GetEnumerator();
            Assert.True(first.MoveNext() && char.IsHighSurrogate(first.Current.Span[^1]), "the pair is not split");
        }
        using var ours = Utf8TextPart.FromText("plain", builder);
        // Every LF given its CR, as in MIME's canonical form of text (which base64 then keeps).
        var lines = text.Replace("\r\n", "\n", StringComparison.Ordinal).Replace("\n", "\r\n", StringComparison.Ordinal);
        using var mimeKits = new TextPart("plain") { Text = lines };

        var laidOut = Assert.IsType<RentedBytesStream>(ours.Content!.Stream);
        Assert.True(laidOut.TryGetBuffer(out var bytes));
        Assert.Equal(lines, Encoding.UTF8.GetString(bytes));
        Assert.Equal(LineShape.Of(bytes), laidOut.Lines); // as found while laying out, so as read afresh
        foreach (var (constraint, maxLineLength) in new[] { (EncodingConstraint.EightBit, TransferEncodings.SmtpMaxLineLength), (EncodingConstraint.SevenBit, 78) })
        {
            mimeKits.Prepare(constraint, maxLineLength);
            ours.Prepare(constraint, maxLineLength);
            Assert.True(mimeKits.ContentTransferEncoding == ours.ContentTransferEncoding,
                $"{name}, {constraint}: MimeKit chose {mimeKits.ContentTransferEncoding}, the part {ours.ContentTransferEncoding}");
            var expected = WrittenAsMimeKit(mimeKits);
            Assert.Equal(expected, WrittenAsMimeKit(ours));
            var wire = FormatOptions.Default.Clone();
            wire.NewLineFormat = NewLineFormat.Dos;
            using var asynchronously = new MemoryStream();
            await ours.WriteToAsync(wire, asynchronously, contentOnly: true);
            Assert.Equal(expected, Encoding.UTF8.GetString(asynchronously.ToArray()));
        }
    }

    [Fact]
    public void ADigestsPartsHoldTheirLinesAsTheyGoOnTheWire()
    {
        var app = Microsoft.Extensions.Options.Options.Create(new AppOptions { BaseUrl = "https://papers.example/", TokenSecret = "a-secret-for-the-transfer-encoding-test" });
        var mail = Microsoft.Extensions.Options.Options.Create(new MailOptions());
        var messageIds = new MessageIds(mail, new ConfigurationBuilder().AddInMemoryCollection(new Dictionary<string, string?> { ["App:TokenSecret"] = app.Value.TokenSecret }).Build());
        var emails = new DigestEmails(mail, app, new LinkTokens(app), messageIds, TimeProvider.System);
        var paper = new DayPaper
        {
            Id = 7,
            Title = "Depth at Night — naïvely",
            Abstract = "Line one,\r\nthen\ntwo.",
            Authors = ["Ada Lovelace"],
            PageUrl = "https://papers.example/p/7",
            Upvotes = 3,
        };
        using var message = emails.Render(1, "reader@example.org", 42, LinkTokens.NewNonce(), new DateOnly(2026, 11, 25),
            [new PlannedPaper(7, ["depth estimation"])], new Dictionary<long, DayPaper> { [7] = paper });
        var wire = FormatOptions.Default.Clone();
        wire.NewLineFormat = NewLineFormat.Dos;

        var parts = Assert.IsType<MultipartAlternative>(message.Body).Cast<Utf8TextPart>().ToList();
        Assert.Equal(["plain", "html"], parts.Select(part => part.ContentType.MediaSubtype));
        foreach (var part in parts)
        {
            Assert.True(Assert.IsAssignableFrom<MemoryStream>(part.Content!.Stream).TryGetBuffer(out var bytes));
            var content = Encoding.UTF8.GetString(bytes);
            Assert.EndsWith("\r\n", content, StringComparison.Ordinal);
            Assert.Equal(content.Split("\r\n").Length - 1, content.Count(c => c == '\n')); // every LF follows a CR
            // What MimeKit's writer makes of the same text with LF line ends is what goes on the wire.
            using var mimeKits = new TextPart(part.ContentType.MediaSubtype)
            {
                Content = new MimeContent(new MemoryStream(Encoding.UTF8.GetBytes(content.ReplaceLineEndings("\n")))),
            };
            mimeKits.ContentType.Charset = "utf-8";
            Assert.Equal(Written(stream => mimeKits.WriteTo(wire, stream, contentOnly: true)), Written(stream => part.WriteTo(wire, stream, contentOnly: true)));
        }
    }

    /// <summary>A part as a digest makes it: the text's UTF-8 in an array rented from the shared pool.</summary>
    private static Utf8TextPart DigestPart(string text)
    {
        var bytes = Encoding.UTF8.GetBytes(text);
        var rented = ArrayPool<byte>.Shared.Rent(bytes.Length);
        bytes.CopyTo(rented, 0);
        return new Utf8TextPart("plain", rented, bytes.Length);
    }

    private static string Written(Action<Stream> write)
    {
        using var written = new MemoryStream();
        write(written);
        return Encoding.UTF8.GetString(written.ToArray());
    }

    /// <summary>The part's content as it goes on the wire (its headers left out: MimeKit's text part names a charset only for non-ASCII).</summary>
    private static string WrittenAsMimeKit(MimePart part)
    {
        var wire = FormatOptions.Default.Clone();
        wire.NewLineFormat = NewLineFormat.Dos;
        using var written = new MemoryStream();
        part.WriteTo(wire, written, contentOnly: true);
        return Encoding.UTF8.GetString(written.ToArray());
    }
}
