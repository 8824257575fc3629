using System.Buffers;

namespace Subscriptions.Email;

/// <summary>
/// Quoted-printable encoding (RFC 2045 §6.7) as MimeKit's <c>QuotedPrintableEncoder</c> writes it, with its line breaks
/// as MimeKit's writer then puts them on the wire: lines of at most 76 characters, a soft line break <c>=</c> CRLF where
/// a line is cut and after a last line without its line break, hard line breaks (CRLF or LF) written as CRLF, and a space
/// or tab at the end of a line encoded. Its output goes on the wire as it is (<see cref="Utf8TextPart"/>).
/// </summary>
/// <remarks>
/// Hand-written because MimeKit's encoder takes one byte at a time: ~12 µs of the ~100 µs an Ed25519-signed digest
/// costs, for a text part that is nearly all ASCII. This copies each run of bytes that go as they are in one move, found
/// with a vectorized search. Checked against MimeKit's decoder in the tests.
/// </remarks>
internal static class QuotedPrintable
{
    private const int MaxLineLength = 76;

    // Printable ASCII but '=', and space and tab (which only the end of a line makes unsafe).
    private static readonly SearchValues<byte> Literal = SearchValues.Create(
        [(byte)'\t', .. Enumerable.Range(' ', '~' - ' ' + 1).Where(c => c != '=').Select(c => (byte)c)]);

    private static ReadOnlySpan<byte> Hex => "0123456789ABCDEF"u8;

    /// <summary>The most bytes <see cref="Encode"/> can write for <paramref name="length"/> bytes: all escaped, with soft breaks.</summary>
    public static int MaxEncodedLength(int length) => 3 * length + 3 * (3 * length / (MaxLineLength - 3) + 1);

    /// <summary>Encodes <paramref name="input"/> into <paramref name="output"/> (at least <see cref="MaxEncodedLength"/> long); returns the bytes written.</summary>
    public static int Encode(ReadOnlySpan<byte> input, Span<byte> output)
    {
        var written = 0;
        var column = 0;
        while (!input.IsEmpty)
        {
            var run = input.IndexOfAnyExcept(Literal);
            var literal = run < 0 ? input : input[..run];
            input = input[literal.Length..];
            while (!literal.IsEmpty)
            {
                // A cut line keeps room for its '='.
                if (column == MaxLineLength - 1)
                {
                    SoftBreak(output, ref written, ref column);
                }
                var take = Math.Min(literal.Length, MaxLineLength - 1 - column);
                literal[..take].CopyTo(output[written..]);
                written += take;
                column += take;
                literal = literal[take..];
            }
            if (input.IsEmpty)
            {
                break;
            }
            var octet = input[0];
            if (octet == (byte)'\n' || (octet == (byte)'\r' && input.Length > 1 && input[1] == (byte)'\n'))
            {
                EncodeTrailingBlank(output, ref written, ref column);
                output[written++] = (byte)'\r';
                output[written++] = (byte)'\n';
                column = 0;
                input = input[(octet == (byte)'\r' ? 2 : 1)..];
                continue;
            }
            if (column + 3 > MaxLineLength - 1)
            {
                SoftBreak(output, ref written, ref column);
            }
            Escape(output, ref written, ref column, octet);
            input = input[1..];
        }
        if (column > 0)
        {
            // A last line without its line break ends in a soft one: the line break the MIME writer adds after the
            // content is then not part of it once decoded.
            EncodeTrailingBlank(output, ref written, ref column);
            SoftBreak(output, ref written, ref column);
        }
        return written;
    }

    private static void SoftBreak(Span<byte> output, ref int written, ref int column)
    {
        output[written++] = (byte)'=';
        output[written++] = (byte)'\r';
        output[written++] = (byte)'\n';
        column = 0;
    }

    private static void Escape(Span<byte> output, ref int written, ref int column, byte octet)
    {
        output[written++] = (byte)'=';
        output[written++] = Hex[octet >> 4];
        output[written++] = Hex[octet & 0xF];
        column += 3;
    }

    /// <summary>A space or tab that ends a line would be lost in transport (RFC 2045 §6.7 (3)): it is written encoded instead.</summary>
    private static void EncodeTrailingBlank(Span<byte> output, ref int written, ref int column)
    {
        if (column == 0 || output[written - 1] is not ((byte)' ' or (byte)'\t'))
        {
            return;
        }
        var blank = output[--written];
        column--;
        if (column + 3 > MaxLineLength - 1)
        {
            SoftBreak(output, ref written, ref column);
        }
        Escape(output, ref written, ref column, blank);
    }
}
