using System.Text;
using MimeKit.Encodings;
using Subscriptions.Email;

namespace Subscriptions.Tests;

/// <summary>Our quoted-printable encoder, decoded by MimeKit's decoder, and held to RFC 2045's rules for its lines (CRLF, as on the wire).</summary>
public sealed class QuotedPrintableTests
{
    public static TheoryData<string, byte[]> Inputs()
    {
        var random = new Random(2045);
        var data = new TheoryData<string, byte[]>
        {
            { "empty", [] },
            { "ASCII lines", "Line one\nLine two\n"u8.ToArray() },
            { "CRLF lines", "one\r\ntwo\r\n"u8.ToArray() },
            { "non-ASCII", Encoding.UTF8.GetBytes("Déjà vu — naïve 日本語\n") },
            { "equals signs", "a=b==c=\n=\n"u8.ToArray() },
            { "blanks at line ends", "space \ntab\t\nboth \t\n  \n\t\nlast "u8.ToArray() },
            { "a bare CR", "a\rb\r\n\r"u8.ToArray() },
            { "a long ASCII line", Encoding.ASCII.GetBytes(string.Concat(Enumerable.Repeat("word ", 100)) + "\n") },
            { "a long line of escapes", Encoding.UTF8.GetBytes(new string('é', 200) + "\n") },
            { "escapes about the cut", Encoding.UTF8.GetBytes(new string('a', 72) + "éé" + new string('b', 73) + "=\n") },
            { "a blank at the cut", Encoding.ASCII.GetBytes(new string('a', 74) + " \n" + new string('a', 75) + "\t\n" + new string('a', 73) + " ") },
            { "control bytes and NUL", [0, 1, 2, 0x7F, 0x1B, (byte)'x', (byte)'\n'] },
        };
        for (var i = 0; i < 20; i++)
        {
            var bytes = new byte[random.Next(1, 3000)];
            random.NextBytes(bytes);
            // Mostly text, like a digest: printable ASCII, some line ends, blanks and UTF-8.
            for (var j = 0; j < bytes.Length; j++)
            {
                bytes[j] = (bytes[j] % 10) switch
                {
                    0 => (byte)'\n',
                    1 => (byte)' ',
                    2 when i % 2 == 0 => bytes[j],
                    _ => (byte)random.Next(33, 127),
                };
            }
            data.Add($"random {i}", bytes);
        }
        return data;
    }

    [Theory]
    [MemberData(nameof(Inputs))]
    public void WhatWeEncodeDecodesToTheInputInLinesOfAt76WithoutTrailingBlanks(string name, byte[] input)
    {
        var output = new byte[QuotedPrintable.MaxEncodedLength(input.Length)];
        var written = QuotedPrintable.Encode(input, output);
        var encoded = output.AsSpan(0, written).ToArray();

        var decoded = new byte[written + 4];
        var length = new QuotedPrintableDecoder().Decode(encoded, 0, encoded.Length, decoded);
        // Every line break, LF or CRLF, is a CRLF once encoded, as on the wire.
        var expected = Encoding.Latin1.GetString(input).Replace("\r\n", "\n", StringComparison.Ordinal).Replace("\n", "\r\n", StringComparison.Ordinal);
        Assert.Equal(expected, Encoding.Latin1.GetString(decoded, 0, length));

        var text = Encoding.ASCII.GetString(encoded);
        Assert.All(encoded, octet => Assert.True(octet is (byte)'\r' or (byte)'\n' or (byte)'\t' || octet is >= 32 and < 127, $"{name}: byte {octet} is not printable ASCII"));
        Assert.Equal(text.Count(c => c == '\n'), text.Split("\r\n").Length - 1); // no bare LF
        Assert.Equal(text.Count(c => c == '\r'), text.Split("\r\n").Length - 1); // no bare CR
        Assert.All(text.Split("\r\n"), line =>
        {
            Assert.True(line.Length <= 76, $"{name}: a line of {line.Length}: {line}");
            Assert.False(line.EndsWith(' ') || line.EndsWith('\t'), $"{name}: a line ends in a blank: {line}");
        });
    }

    [Fact]
    public void ADigestsTextIsEncodedAsMimeKitEncodesIt()
    {
        var text = Encoding.UTF8.GetBytes(
            "Trending papers in depth estimation — 25 Nov 2026\n\n1. Depth Estimation at Night (12 upvotes)\n   Ada Lovelace, Grace Hopper, Alan Turing et al.\n" +
            "   We estimate depth, naïvely. " + string.Concat(Enumerable.Repeat("More detail. ", 12)) + "\n   Matched: depth estimation\n");
        var ours = new byte[QuotedPrintable.MaxEncodedLength(text.Length)];
        var mimeKits = new byte[new QuotedPrintableEncoder().EstimateOutputLength(text.Length)];

        var oursLength = QuotedPrintable.Encode(text, ours);
        var mimeKitsLength = new QuotedPrintableEncoder().Flush(text, 0, text.Length, mimeKits);

        // MimeKit's encoder ends lines in LF, which its writer makes CRLF on the wire.
        Assert.Equal(Encoding.ASCII.GetString(mimeKits, 0, mimeKitsLength).Replace("\n", "\r\n", StringComparison.Ordinal), Encoding.ASCII.GetString(ours, 0, oursLength));
    }
}
