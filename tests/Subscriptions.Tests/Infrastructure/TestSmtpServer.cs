using System.Buffers;
using System.Collections.Concurrent;
using System.Net;
using System.Net.Sockets;
using System.Security.Cryptography.X509Certificates;
using MimeKit;
using SmtpServer;
using SmtpServer.Net;
using SmtpServer.Protocol;
using SmtpServer.Storage;

namespace Subscriptions.Tests.Infrastructure;

/// <summary>
/// A real SMTP server on a loopback port inside the test process. It keeps every message it
/// accepts, parsed, and can be told to answer the next messages with an error reply instead.
/// </summary>
public sealed class TestSmtpServer : IAsyncDisposable
{
    private readonly ConcurrentQueue<MimeMessage> _received = new();
    private readonly ConcurrentQueue<SmtpResponse> _scriptedReplies = new();
    private readonly ConcurrentDictionary<MimeMessage, byte[]> _raw = new();
    private readonly ConcurrentDictionary<MimeMessage, string> _envelopeSenders = new();
    private readonly object _holdLock = new();
    private int? _holdAfter;
    private bool _acceptHeld;
    private static readonly SmtpResponse HeldAndNotAccepted = new(SmtpReplyCode.ServiceUnavailable, "Held by the test and not accepted");
    private SmtpResponse _heldReply = HeldAndNotAccepted;
    private volatile SmtpResponse? _senderRefusal;
    private volatile SmtpResponse? _recipientRefusal;
    private TimeSpan _replyDelay;
    private TaskCompletionSource? _heldRelease;
    private int _held;
    private readonly ConcurrentQueue<string> _heldRecipients = new();
    private int _sessionsEnded;
    private int _admitted; // messages let through, counted when admitted so that concurrent connections cannot both slip past the limit
    private readonly TimeSpan? _idleTimeout;
    private readonly X509Certificate2? _certificate;
    private readonly bool _implicitTls;
    private readonly ConcurrentDictionary<MimeMessage, bool> _overTls = new();
    private SmtpServer.SmtpServer? _server;
    private Task? _running;

    /// <summary>
    /// Reserves a free port; the server listens only once <see cref="StartAsync"/> is called. With
    /// <paramref name="idleTimeout"/>, it hangs up on a client that sends no command for that long, as relays do. With
    /// <paramref name="certificate"/>, it offers STARTTLS, or with <paramref name="implicitTls"/> speaks only TLS.
    /// </summary>
    public TestSmtpServer(TimeSpan? idleTimeout = null, X509Certificate2? certificate = null, bool implicitTls = false)
    {
        _idleTimeout = idleTimeout;
        _certificate = certificate;
        _implicitTls = implicitTls;
        using var probe = new TcpListener(IPAddress.Loopback, 0);
        probe.Start();
        Port = ((IPEndPoint)probe.LocalEndpoint).Port;
        probe.Stop();
    }

    public int Port { get; }

    public IReadOnlyList<MimeMessage> Received => [.. _received];

    /// <summary>SMTP sessions over, however they ended (the client's QUIT, a hang-up, the server's idle timeout).</summary>
    public int SessionsEnded => Volatile.Read(ref _sessionsEnded);

    /// <summary>Scripted error replies not given yet.</summary>
    public int UnusedScriptedReplies => _scriptedReplies.Count;

    /// <summary>
    /// A server listening on a port of its own. The port is reserved by closing a listener on it, so another process may
    /// take it before the server binds it: then it tries again on another.
    /// </summary>
    public static async Task<TestSmtpServer> StartNewAsync(TimeSpan? idleTimeout = null, X509Certificate2? certificate = null, bool implicitTls = false)
    {
        for (var attempt = 1; ; attempt++)
        {
            var server = new TestSmtpServer(idleTimeout, certificate, implicitTls);
            try
            {
                await server.StartAsync();
                return server;
            }
            catch (SocketException) when (attempt < 3)
            {
                // That server never listened: there is nothing to stop, and it is left to the collector.
            }
        }
    }

    /// <summary>The message exactly as it came over the wire (headers folded as sent).</summary>
    public byte[] RawOf(MimeMessage message) => _raw[message];

    /// <summary>Whether the message came over TLS.</summary>
    public bool CameOverTls(MimeMessage message) => _overTls[message];

    /// <summary>The envelope sender (MAIL FROM) the message came with.</summary>
    public string EnvelopeSenderOf(MimeMessage message) => _envelopeSenders[message];

    /// <summary>Messages beyond the first <paramref name="accepted"/> are held unanswered until <see cref="DiscardHeld()"/>.</summary>
    public void HoldAfter(int accepted)
    {
        lock (_holdLock)
        {
            _holdAfter = accepted;
            _heldRelease = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        }
    }

    public int Held => Volatile.Read(ref _held);

    /// <summary>The envelope recipients of the messages held so far, in the order they arrived.</summary>
    public IReadOnlyList<string> HeldRecipients => [.. _heldRecipients];

    /// <summary>Answers every held message with 421 (not accepted, try again) and stops holding.</summary>
    public void DiscardHeld() => DiscardHeld(HeldAndNotAccepted);

    /// <summary>Answers every held message with this reply (not accepted) and stops holding.</summary>
    public void DiscardHeld(SmtpReplyCode code, string text) => DiscardHeld(new SmtpResponse(code, text));

    private void DiscardHeld(SmtpResponse reply)
    {
        lock (_holdLock)
        {
            _holdAfter = null;
            _heldReply = reply;
            _heldRelease?.TrySetResult();
        }
    }

    /// <summary>Each message's reply (after its data has arrived) comes this much later, as from a relay that scans mail slowly.</summary>
    public void DelayReplies(TimeSpan delay) => _replyDelay = delay;

    /// <summary>
    /// While set, every MAIL FROM gets this reply, as from a relay that will not take mail from this sender (a 553 for an
    /// address it does not own, a 530 demanding STARTTLS); null accepts senders again.
    /// </summary>
    public void RefuseSenders(SmtpReplyCode? code, string text = "") => _senderRefusal = code is { } reply ? new SmtpResponse(reply, text) : null;

    /// <summary>While set, every RCPT TO gets this reply (a relay denying relaying, or an unknown user); null accepts recipients again.</summary>
    public void RefuseRecipients(SmtpReplyCode? code, string text = "") => _recipientRefusal = code is { } reply ? new SmtpResponse(reply, text) : null;

    /// <summary>Accepts every held message (as if the server had only been slow) and stops holding.</summary>
    public void AcceptHeld()
    {
        lock (_holdLock)
        {
            _holdAfter = null;
            _acceptHeld = true;
            _heldRelease?.TrySetResult();
        }
    }

    /// <summary>The next message(s) get this reply (e.g. 421 or 550) instead of being accepted.</summary>
    public void ReplyToNext(SmtpReplyCode code, string text, int times = 1)
    {
        for (var i = 0; i < times; i++)
        {
            _scriptedReplies.Enqueue(new SmtpResponse(code, text));
        }
    }

    public async Task StartAsync()
    {
        var builder = new SmtpServerOptionsBuilder()
            .ServerName("test-smtp.localhost")
            .Endpoint(endpoint =>
            {
                endpoint.Endpoint(new IPEndPoint(IPAddress.Loopback, Port));
                if (_certificate is not null)
                {
                    endpoint.Certificate(_certificate).IsSecure(_implicitTls);
                }
            });
        if (_idleTimeout is { } idle)
        {
            builder.CommandWaitTimeout(idle);
        }
        var options = builder.Build();
        var listening = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        var listeners = new EndpointListenerFactory();
        listeners.EndpointStarted += (_, _) => listening.TrySetResult();
        var services = new SmtpServer.ComponentModel.ServiceProvider();
        services.Add(new Store(this));
        services.Add(new EnvelopeFilter(this));
        services.Add(listeners);
        _server = new SmtpServer.SmtpServer(options, services);
        _server.SessionCompleted += (_, _) => Interlocked.Increment(ref _sessionsEnded);
        _server.SessionFaulted += (_, _) => Interlocked.Increment(ref _sessionsEnded);
        _server.SessionCancelled += (_, _) => Interlocked.Increment(ref _sessionsEnded);
        _running = _server.StartAsync(CancellationToken.None);
        // A port taken in the meantime fails the server's task (and the listener never starts): that error, not a timeout.
        // The wait is generous: the whole suite runs in parallel on two cores.
        if (await Task.WhenAny(listening.Task, _running).WaitAsync(TimeSpan.FromSeconds(30)) == _running)
        {
            await _running;
        }
    }

    public async Task StopAsync()
    {
        if (_server is not null)
        {
            _server.Shutdown();
            await _server.ShutdownTask.WaitAsync(TimeSpan.FromSeconds(10));
            _server = null;
        }
    }

    /// <summary>Waits until a message for <paramref name="recipient"/> has arrived, and returns it.</summary>
    public async Task<MimeMessage> WaitForMessageToAsync(string recipient, TimeSpan? timeout = null)
    {
        var messages = await Eventually.ValueAsync(() => Task.FromResult(MessagesTo(recipient)), found => found.Count > 0,
            $"a message to {recipient}", _ => $"none, but {Received.Count} to others", timeout);
        return messages[0];
    }

    public IReadOnlyList<MimeMessage> MessagesTo(string recipient) =>
        [.. _received.Where(m => m.To.Mailboxes.Any(to => to.Address.Equals(recipient, StringComparison.OrdinalIgnoreCase)))];

    public async ValueTask DisposeAsync()
    {
        DiscardHeld();
        await StopAsync();
        if (_running is not null)
        {
            await _running.WaitAsync(TimeSpan.FromSeconds(10));
        }
    }

    private sealed class EnvelopeFilter(TestSmtpServer server) : MailboxFilter
    {
        public override Task<bool> CanAcceptFromAsync(ISessionContext context, SmtpServer.Mail.IMailbox from, int size, CancellationToken cancellationToken) =>
            server._senderRefusal is { } refusal ? throw new SmtpResponseException(refusal) : Task.FromResult(true);

        public override Task<bool> CanDeliverToAsync(
            ISessionContext context, SmtpServer.Mail.IMailbox to, SmtpServer.Mail.IMailbox from, CancellationToken cancellationToken) =>
            server._recipientRefusal is { } refusal ? throw new SmtpResponseException(refusal) : Task.FromResult(true);
    }

    private sealed class Store(TestSmtpServer server) : MessageStore
    {
        public override async Task<SmtpResponse> SaveAsync(
            ISessionContext context, IMessageTransaction transaction, ReadOnlySequence<byte> buffer, CancellationToken cancellationToken)
        {
            if (server._replyDelay > TimeSpan.Zero)
            {
                await Task.Delay(server._replyDelay, cancellationToken);
            }
            if (server._scriptedReplies.TryDequeue(out var reply))
            {
                return reply;
            }
            Task? hold = null;
            lock (server._holdLock)
            {
                if (server._holdAfter is { } limit && server._admitted >= limit)
                {
                    foreach (var recipient in transaction.To)
                    {
                        server._heldRecipients.Enqueue(AddressOf(recipient));
                    }
                    Interlocked.Increment(ref server._held);
                    hold = server._heldRelease!.Task;
                }
                else
                {
                    server._admitted++;
                }
            }
            if (hold is not null)
            {
                await hold;
                if (!server._acceptHeld)
                {
                    lock (server._holdLock)
                    {
                        return server._heldReply;
                    }
                }
                lock (server._holdLock)
                {
                    server._admitted++;
                }
            }
            var bytes = buffer.ToArray();
            using var stream = new MemoryStream(bytes);
            var message = await MimeMessage.LoadAsync(stream, cancellationToken);
            server._raw[message] = bytes;
            server._envelopeSenders[message] = AddressOf(transaction.From);
            server._overTls[message] = context.Pipe.IsSecure;
            server._received.Enqueue(message);
            return SmtpResponse.Ok;
        }

        private static string AddressOf(SmtpServer.Mail.IMailbox mailbox) => $"{mailbox.User}@{mailbox.Host}";
    }
}
