using System.Buffers;
using System.Security.Cryptography;
using MimeKit;

namespace Subscriptions.Email;

/// <summary>
/// DKIM's relaxed body canonicalization (RFC 6376 §3.4.4) fed to SHA-256 as the body is written: in each line, runs of
/// spaces and tabs become one space and those at its end go; empty lines at the end of the body go; every line ends in
/// CRLF (a bare LF counts as a line end, as MimeKit's writer makes it one on the wire).
/// </summary>
/// <remarks>
/// Hand-written, where MimeKit's signer would do: MimeKit hashes the body with BouncyCastle's managed SHA-256 through a
/// filter that takes one byte at a time, and has no hook for either. In the message benchmark that body hash took
/// ~230 µs of the ~560 µs DKIM added to a 22 KB digest; this copies runs of ordinary bytes whole and hashes them with
/// the platform's SHA-256 (the CPU's SHA instructions). Checked against MimeKit's own signer in the tests.
/// </remarks>
internal sealed class RelaxedBodyHashStream : Stream
{
    private const int BufferSize = 16 * 1024;

    private readonly IncrementalHash _hash = IncrementalHash.CreateHash(HashAlgorithmName.SHA256);
    // Canonical bytes gather here and go to the hash in large blocks: each call into it crosses into OpenSSL.
    private readonly byte[] _buffer = ArrayPool<byte>.Shared.Rent(BufferSize);
    private int _buffered;
    private bool _blank;       // spaces or tabs since this line's last other byte
    private bool _lineHasText; // this line has a byte other than a space or a tab
    private int _emptyLines;   // empty lines since the last line with text: written only if text follows
    private bool _cr;          // the last byte was a CR, which ends a line only if an LF follows

    public override bool CanRead => false;

    public override bool CanSeek => false;

    public override bool CanWrite => true;

    public override long Length => throw new NotSupportedException();

    public override long Position { get => throw new NotSupportedException(); set => throw new NotSupportedException(); }

    public override void Write(byte[] buffer, int offset, int count) => Write(buffer.AsSpan(offset, count));

    public override void Write(ReadOnlySpan<byte> buffer)
    {
        while (!buffer.IsEmpty)
        {
            if (_cr)
            {
                _cr = false;
                if (buffer[0] == (byte)'\n')
                {
                    EndLine();
                    buffer = buffer[1..];
                    continue;
                }
                Text("\r"u8);
            }
            var special = buffer.IndexOfAny("\t\r\n"u8);
            Spaced(special < 0 ? buffer : buffer[..special]);
            if (special < 0)
            {
                return;
            }
            switch (buffer[special])
            {
                case (byte)'\r':
                    _cr = true;
                    break;
                case (byte)'\n':
                    EndLine();
                    break;
                default:
                    _blank = true;
                    break;
            }
            buffer = buffer[(special + 1)..];
        }
    }

    /// <summary>
    /// A stretch without tabs or line ends: its single spaces between words stay as they are, so it is copied whole up
    /// to a run of two spaces or more, or a space at its end (which may turn out to end the line).
    /// </summary>
    private void Spaced(ReadOnlySpan<byte> stretch)
    {
        while (!stretch.IsEmpty)
        {
            var text = stretch.IndexOfAnyExcept((byte)' ');
            if (text < 0)
            {
                _blank = true;
                return;
            }
            if (text > 0)
            {
                _blank = true;
                stretch = stretch[text..];
            }
            var run = stretch.IndexOf("  "u8);
            var words = run < 0 ? stretch : stretch[..run];
            if (words[^1] == (byte)' ')
            {
                Text(words[..^1]);
                _blank = true;
            }
            else
            {
                Text(words);
            }
            stretch = stretch[words.Length..];
        }
    }

    /// <summary>The SHA-256 of the canonical body written so far, ended as the body's end.</summary>
    public byte[] GetHashAndReset()
    {
        if (_cr)
        {
            _cr = false;
            Text("\r"u8);
        }
        if (_lineHasText)
        {
            // A last line without its line break gets one.
            Append("\r\n"u8);
        }
        _hash.AppendData(_buffer, 0, _buffered);
        _buffered = 0;
        _blank = _lineHasText = false;
        _emptyLines = 0;
        return _hash.GetHashAndReset();
    }

    public override void Flush()
    {
    }

    public override int Read(byte[] buffer, int offset, int count) => throw new NotSupportedException();

    public override long Seek(long offset, SeekOrigin origin) => throw new NotSupportedException();

    public override void SetLength(long value) => throw new NotSupportedException();

    protected override void Dispose(bool disposing)
    {
        if (disposing)
        {
            _hash.Dispose();
            ArrayPool<byte>.Shared.Return(_buffer);
        }
        base.Dispose(disposing);
    }

    private void Text(ReadOnlySpan<byte> text)
    {
        for (; _emptyLines > 0; _emptyLines--)
        {
            Append("\r\n"u8);
        }
        if (_blank)
        {
            Append(" "u8);
            _blank = false;
        }
        Append(text);
        _lineHasText = true;
    }

    private void EndLine()
    {
        _blank = false;
        if (_lineHasText)
        {
            Append("\r\n"u8);
            _lineHasText = false;
        }
        else
        {
            _emptyLines++;
        }
    }

    private void Append(ReadOnlySpan<byte> bytes)
    {
        if (_buffered + bytes.Length > BufferSize)
        {
            _hash.AppendData(_buffer, 0, _buffered);
            _buffered = 0;
            if (bytes.Length > BufferSize)
            {
                _hash.AppendData(bytes);
                return;
            }
        }
        bytes.CopyTo(_buffer.AsSpan(_buffered));
        _buffered += bytes.Length;
    }
}

/// <summary>DKIM's relaxed header canonicalization (RFC 6376 §3.4.2).</summary>
internal static class RelaxedHeaders
{
    /// <summary>
    /// Writes <c>name:value</c>: the name in lower case, the value unfolded, every run of whitespace made one space, none at
    /// either end; then CRLF unless <paramref name="last"/> (the DKIM-Signature header itself is hashed without it).
    /// </summary>
    public static void Write(ArrayBufferWriter<byte> output, Header header, bool last)
    {
        var name = header.Field;
        var nameBytes = output.GetSpan(name.Length + 1);
        for (var i = 0; i < name.Length; i++)
        {
            nameBytes[i] = (byte)char.ToLowerInvariant(name[i]);
        }
        nameBytes[name.Length] = (byte)':';
        output.Advance(name.Length + 1);

        ReadOnlySpan<byte> value = header.RawValue;
        var first = true;
        while (true)
        {
            var start = value.IndexOfAnyExcept(" \t\r\n"u8);
            if (start < 0)
            {
                break;
            }
            value = value[start..];
            var end = value.IndexOfAny(" \t\r\n"u8);
            var word = end < 0 ? value : value[..end];
            if (!first)
            {
                output.Write(" "u8);
            }
            output.Write(word);
            first = false;
            value = value[word.Length..];
        }
        if (!last)
        {
            output.Write("\r\n"u8);
        }
    }
}
