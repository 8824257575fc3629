using System.Globalization;
using System.Net.Sockets;
using System.Text;

namespace Subscriptions.Tests.Infrastructure;

/// <summary>
/// HTTP/1.1 over a bare socket, for what HttpClient will not do: keep reading the answer of a server that
/// stopped reading an oversized body (HttpClient gives up on the broken pipe instead).
/// </summary>
public static class RawHttp
{
    // A server that neither answers nor closes fails the test, rather than hanging the whole run.
    private static readonly TimeSpan Timeout = TimeSpan.FromSeconds(60);

    public sealed record Answer(int Status, string Head, string Body);

    public static async Task<Answer> SendAsync(Uri server, string method, string pathAndQuery, string? contentType, byte[] body, bool chunked = false, string accept = "*/*")
    {
        using var timeout = new CancellationTokenSource(Timeout);
        using var client = new TcpClient();
        await client.ConnectAsync(server.Host, server.Port, timeout.Token);
        var stream = client.GetStream();
        var head = new StringBuilder()
            .Append(CultureInfo.InvariantCulture, $"{method} {pathAndQuery} HTTP/1.1\r\nHost: {server.Authority}\r\nAccept: {accept}\r\nConnection: close\r\n");
        if (contentType is { Length: > 0 })
        {
            head.Append(CultureInfo.InvariantCulture, $"Content-Type: {contentType}\r\n");
        }
        head.Append(chunked ? "Transfer-Encoding: chunked\r\n\r\n" : $"Content-Length: {body.Length}\r\n\r\n");

        // Write and read at once: the server may answer (and close) before it has read everything.
        var writing = WriteAsync(stream, Encoding.ASCII.GetBytes(head.ToString()), body, chunked, timeout.Token);
        using var response = new MemoryStream();
        try
        {
            await stream.CopyToAsync(response, timeout.Token);
        }
        catch (IOException)
        {
            // Reset after the answer was read: what arrived is what counts.
        }
        catch (OperationCanceledException) when (timeout.IsCancellationRequested)
        {
            throw new TimeoutException($"{method} {pathAndQuery}: the answer did not end within {Timeout.TotalSeconds:N0} s; it began: " +
                Encoding.UTF8.GetString(response.ToArray()[..(int)Math.Min(response.Length, 500)]));
        }
        await writing;

        var text = Encoding.UTF8.GetString(response.ToArray());
        var split = text.IndexOf("\r\n\r\n", StringComparison.Ordinal);
        var statusLine = text.Split("\r\n", 2)[0];
        var status = statusLine.Split(' ') is [_, var code, ..] && int.TryParse(code, CultureInfo.InvariantCulture, out var parsed) ? parsed : 0;
        return new Answer(status, split < 0 ? text : text[..split], split < 0 ? "" : text[(split + 4)..]);
    }

    private static async Task WriteAsync(NetworkStream stream, byte[] head, byte[] body, bool chunked, CancellationToken cancellationToken)
    {
        try
        {
            await stream.WriteAsync(head, cancellationToken);
            if (!chunked)
            {
                await stream.WriteAsync(body, cancellationToken);
                return;
            }
            for (var offset = 0; offset < body.Length; offset += 16 * 1024)
            {
                var length = Math.Min(16 * 1024, body.Length - offset);
                await stream.WriteAsync(Encoding.ASCII.GetBytes($"{length:x}\r\n"), cancellationToken);
                await stream.WriteAsync(body.AsMemory(offset, length), cancellationToken);
                await stream.WriteAsync("\r\n"u8.ToArray(), cancellationToken);
            }
            await stream.WriteAsync("0\r\n\r\n"u8.ToArray(), cancellationToken);
        }
        catch (Exception e) when (e is IOException or OperationCanceledException)
        {
            // The server stopped reading: it has answered, or is about to (or the time ran out, which the reading reports).
        }
    }
}
