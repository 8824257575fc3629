using System.Net;
using System.Net.Sockets;
using System.Text;

namespace Subscriptions.Tests.Infrastructure;

/// <summary>
/// A TCP relay in front of a plain-text IMAP server that hangs up, as a dropped connection does, when the client
/// sends a command that moves or copies messages (<c>MOVE</c>, <c>COPY</c>), which never reaches the server; after
/// <see cref="LetMovesThrough"/>, it relays everything.
/// </summary>
public sealed class ImapMoveDroppingProxy : IAsyncDisposable
{
    private readonly TcpListener _listener = new(IPAddress.Loopback, 0);
    private readonly CancellationTokenSource _stopping = new();
    private readonly int _serverPort;
    private readonly Task _accepting;
    private volatile bool _letMovesThrough;
    private int _droppedMoves;

    public ImapMoveDroppingProxy(int serverPort)
    {
        _serverPort = serverPort;
        _listener.Start();
        Port = ((IPEndPoint)_listener.LocalEndpoint).Port;
        _accepting = AcceptAsync();
    }

    public int Port { get; }

    /// <summary>How many connections were dropped at a move so far.</summary>
    public int DroppedMoves => Volatile.Read(ref _droppedMoves);

    public void LetMovesThrough() => _letMovesThrough = true;

    public async ValueTask DisposeAsync()
    {
        await _stopping.CancelAsync();
        _listener.Stop();
        try
        {
            await _accepting;
        }
        catch (Exception e) when (e is OperationCanceledException or SocketException or ObjectDisposedException)
        {
            // Stopped.
        }
        _stopping.Dispose();
    }

    private async Task AcceptAsync()
    {
        while (!_stopping.IsCancellationRequested)
        {
            var client = await _listener.AcceptTcpClientAsync(_stopping.Token);
            _ = RelayAsync(client);
        }
    }

    private async Task RelayAsync(TcpClient client)
    {
        using var server = new TcpClient();
        try
        {
            await server.ConnectAsync(IPAddress.Loopback, _serverPort, _stopping.Token);
            using var hangUp = CancellationTokenSource.CreateLinkedTokenSource(_stopping.Token);
            var toClient = server.GetStream().CopyToAsync(client.GetStream(), hangUp.Token);
            var toServer = RelayCommandsAsync(client.GetStream(), server.GetStream(), hangUp.Token);
            await Task.WhenAny(toClient, toServer);
            await hangUp.CancelAsync();
        }
        catch (Exception e) when (e is IOException or SocketException or OperationCanceledException or ObjectDisposedException)
        {
            // Either side went away.
        }
        finally
        {
            client.Dispose();
        }
    }

    /// <summary>Relays the client's commands line by line, and returns (so that both sides are hung up on) at a move.</summary>
    private async Task RelayCommandsAsync(Stream client, Stream server, CancellationToken cancellationToken)
    {
        var pending = new List<byte>();
        var buffer = new byte[4096];
        int read;
        while ((read = await client.ReadAsync(buffer, cancellationToken)) > 0)
        {
            pending.AddRange(buffer.AsSpan(0, read));
            int end;
            while ((end = pending.IndexOf((byte)'\n')) >= 0)
            {
                var line = pending.GetRange(0, end + 1).ToArray();
                pending.RemoveRange(0, end + 1);
                var command = Encoding.ASCII.GetString(line);
                if (!_letMovesThrough && (command.Contains(" MOVE ", StringComparison.OrdinalIgnoreCase) || command.Contains(" COPY ", StringComparison.OrdinalIgnoreCase)))
                {
                    Interlocked.Increment(ref _droppedMoves);
                    return;
                }
                await server.WriteAsync(line, cancellationToken);
            }
        }
    }
}
