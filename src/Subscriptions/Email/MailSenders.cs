using System.Net.Security;
using System.Net.Sockets;
using System.Security.Cryptography.X509Certificates;
using System.Threading.Channels;
using System.Threading.RateLimiting;
using MailKit;
using MailKit.Net.Smtp;
using Microsoft.Extensions.Options;
using MimeKit;
using Polly;
using Polly.Registry;
using Subscriptions.Subscribers;

namespace Subscriptions.Email;

/// <summary>
/// Asked once the message has a connection to go out on, just before it goes: false and it is not sent. Asked again
/// for each retry, so it must give the same answer when asked twice.
/// </summary>
internal delegate ValueTask<bool> StillWanted();

/// <summary>The one way this service sends an email: confirmations, digests, notices.</summary>
internal interface IMailSender
{
    /// <summary>
    /// Hands the message to the mail system, retrying transient failures; false when <paramref name="stillWanted"/>
    /// said no. Throws <see cref="PermanentMailException"/> when the server refuses it for good (a 5xx reply to the recipient or
    /// the message; see <see cref="SmtpMailSender.IsRecipientsRefusal"/>).
    /// </summary>
    Task<bool> SendAsync(MimeMessage message, StillWanted? stillWanted, CancellationToken cancellationToken);

    Task SendAsync(MimeMessage message, CancellationToken cancellationToken) => SendAsync(message, null, cancellationToken);
}

/// <summary>Where a signed message goes: the SMTP relay or the pickup folder.</summary>
internal interface IMailTransport
{
    /// <summary>Hands over the message with <paramref name="returnPath"/> as its envelope sender (SMTP's MAIL FROM), where bounces go.</summary>
    Task<bool> SendAsync(MimeMessage message, MailboxAddress returnPath, StillWanted? stillWanted, CancellationToken cancellationToken);
}

/// <summary>
/// SMTP when <c>Smtp:Host</c> is set, the pickup folder otherwise. Chosen at the first send, not when
/// built, so that a bad setting is reported by start-up validation rather than as a failure to build a service.
/// Every message is DKIM-signed here (when <c>Dkim:*</c> is set), and given its return path, whatever kind of email it is.
/// </summary>
internal sealed class ConfiguredMailSender(
    IOptions<SmtpOptions> options, IOptions<AppOptions> app, DkimMessageSigner dkim, ReturnPaths returnPaths, IServiceProvider services) : IMailSender
{
    private readonly Lazy<IMailTransport> _transport = new(() =>
    {
        if (options.Value.HasHost)
        {
            // Digests offer one-click unsubscribe only with HTTPS links (DigestEmails). Not said for a site on this machine (a
            // try-out with a mail catcher): no mail provider follows its links.
            var baseUrl = new Uri(app.Value.BaseUrl);
            if (baseUrl.Scheme != Uri.UriSchemeHttps && !baseUrl.IsLoopback)
            {
                services.GetRequiredService<ILogger<ConfiguredMailSender>>().LogWarning(
                    "App:BaseUrl is {BaseUrl}: the links in emails are plain HTTP, and mail providers offer one-click unsubscribe " +
                    "(RFC 8058, which Gmail and Yahoo require of bulk senders) only over HTTPS; digests go without List-Unsubscribe-Post " +
                    "until App:BaseUrl is the site's https:// address", app.Value.BaseUrl);
            }
            return services.GetRequiredService<SmtpMailSender>();
        }
        // Said once, loudly: a relay setting that was never read (a missing or misspelt environment variable, Smtp_Host for
        // Smtp__Host, lies outside any section of ours) turns every email into a file no one reads.
        services.GetRequiredService<ILogger<ConfiguredMailSender>>().LogWarning(
            "Smtp:Host is not set: emails are written as .eml files to {Directory}, not sent (for local runs; set Smtp:Host to send)",
            Path.GetFullPath(services.GetRequiredService<IOptions<MailOptions>>().Value.PickupDirectory));
        return services.GetRequiredService<PickupDirectoryMailSender>();
    });

    public Task<bool> SendAsync(MimeMessage message, StillWanted? stillWanted, CancellationToken cancellationToken)
    {
        dkim.Sign(message);
        return _transport.Value.SendAsync(message, returnPaths.For(message), stillWanted, cancellationToken);
    }
}

/// <summary>The envelope every email of this service shares: From, To, Date, a Message-ID in the sender's domain.</summary>
internal static class MailEnvelope
{
    // messageIdLocalPart: what the message is, from MessageIds (delivery-42.20261125.3f9a0c12be77).
    public static MimeMessage Create(MailOptions mail, DateTimeOffset date, string to, string subject, BodyBuilder body, string messageIdLocalPart) =>
        Create(mail, date, to, subject, body.ToMessageBody(), messageIdLocalPart);

    public static MimeMessage Create(MailOptions mail, DateTimeOffset date, string to, string subject, MimeEntity body, string messageIdLocalPart)
    {
        var from = mail.FromAddress;
        // Built on an empty header list: MimeMessage's parameterless constructor fills in an empty From, the time now, an
        // empty Subject and a random Message-ID (formatting each header, and drawing from the system's random source), all
        // replaced here at once; that was a tenth of rendering a digest. The headers come out in the same order.
        var message = new MimeMessage(new HeaderList());
        message.From.Add(from);
        message.Date = date;
        message.Subject = ShownAsTyped(subject);
        message.MessageId = $"{messageIdLocalPart}@{from.Domain}";
        message.To.Add(MailboxAddress.Parse(to));
        message.Body = body;
        // RFC 3834: made by a program, not a person, so autoresponders (out of office) do not answer it; their replies went
        // to the bounce mailbox, where they stay as unreadable reports.
        message.Headers.Add(AutoSubmitted, "auto-generated");
        return message;
    }

    private const string AutoSubmitted = "Auto-Submitted";

    /// <summary>
    /// Text that looks like an RFC 2047 encoded-word (<c>=?utf-8?B?…?=</c>), say in a topic someone typed, would
    /// be decoded by mail clients into text nobody typed. A word joiner (invisible) after each <c>=</c> of
    /// <c>=?</c> makes it plain text, which MimeKit then encodes properly: it shows as typed.
    /// </summary>
    private static string ShownAsTyped(string text) => text.Replace("=?", "=\u2060?", StringComparison.Ordinal);
}

/// <summary>The mail server refused a message with a permanent (5xx) reply; trying again will not help.</summary>
internal sealed class PermanentMailException(string reply, Exception inner) : Exception(reply, inner)
{
    public string Reply { get; } = reply;
}

/// <summary>
/// Sends over a small pool of long-lived SMTP connections (<c>Smtp:Connections</c>). MailKit's
/// <see cref="SmtpClient"/> is not thread-safe and has no pool of its own, so each connection is
/// lent to one sender at a time. A connection that fails in any way is thrown away and the next
/// user opens a fresh one.
/// </summary>
internal sealed class SmtpMailSender : IMailTransport, IAsyncDisposable
{
    public const string PipelineName = "smtp";

    private readonly SmtpOptions _options;
    private readonly ResiliencePipeline _pipeline;
    private readonly ILogger<SmtpMailSender> _logger;
    private readonly Channel<IdleConnection?> _idle;
    private readonly SlidingWindowRateLimiter? _rate;
    private readonly X509Certificate2? _trusted;

    // Larger than a digest (~15–25 KB): a bigger message goes in this many bytes at a time.
    private const int MessageBufferBytes = 64 * 1024;

    public SmtpMailSender(IOptions<SmtpOptions> options, ResiliencePipelineProvider<string> pipelines, ILogger<SmtpMailSender> logger)
    {
        _options = options.Value;
        _pipeline = pipelines.GetPipeline(PipelineName);
        _logger = logger;
        _trusted = string.IsNullOrWhiteSpace(_options.TrustedCertificatePath) ? null : _options.LoadTrustedCertificate();
        _idle = Channel.CreateBounded<IdleConnection?>(_options.Connections);
        for (var i = 0; i < _options.Connections; i++)
        {
            _idle.Writer.TryWrite(null);
        }
        if (_options.IsThrottled)
        {
            // One limiter for all connections: a relay's rate is per sender, not per connection. A sliding
            // window (in tenths of a second) keeps every one-second span at the limit; waiting senders queue in order.
            _rate = new SlidingWindowRateLimiter(new SlidingWindowRateLimiterOptions
            {
                PermitLimit = _options.MaxPerSecond,
                Window = TimeSpan.FromSeconds(1),
                SegmentsPerWindow = 10,
                QueueLimit = int.MaxValue,
                QueueProcessingOrder = QueueProcessingOrder.OldestFirst,
                AutoReplenishment = true,
            });
        }
    }

    public async Task<bool> SendAsync(MimeMessage message, MailboxAddress returnPath, StillWanted? stillWanted, CancellationToken cancellationToken)
    {
        if (_rate is not null)
        {
            using var permit = await _rate.AcquireAsync(1, cancellationToken);
        }
        // The message has its connection for all its attempts, and waits for it outside them: counted against the attempt's
        // Smtp:Timeout, the wait for another message's send left too little for this one's, and a relay slow to answer (1.2 s
        // of a 2 s timeout, two senders a connection) had messages timed out after their data had gone, and sent again.
        var connection = new HeldConnection(await _idle.Reader.ReadAsync(cancellationToken));
        try
        {
            return await _pipeline.ExecuteAsync(
                static async (state, token) => await state.sender.SendOnceAsync(state.connection, state.message, state.returnPath, state.stillWanted, token),
                (sender: this, connection, message, returnPath, stillWanted), cancellationToken);
        }
        catch (SmtpCommandException e) when (IsRecipientsRefusal(e))
        {
            throw new PermanentMailException($"{(int)e.StatusCode} {e.Message}", e);
        }
        finally
        {
            _idle.Writer.TryWrite(connection.Client is null ? null : new IdleConnection(connection.Client, Environment.TickCount64));
        }
    }

    /// <summary>
    /// A 5xx reply to the recipient (RCPT TO) or to the message itself (after DATA): the recipient's address or mail
    /// server will not take it, and it counts against the subscriber. A 5xx reply anywhere else (to MAIL FROM, such as
    /// "553 sender not owned by user" or "530 must issue STARTTLS first", or to DATA itself) is the relay refusing this
    /// service, the same for every recipient: treated as the relay failing, so that it pauses sending rather than
    /// failing, and bouncing, every subscriber of the day. So is a refusal of the recipient that is the relay declining to
    /// relay for this service, whoever the recipient: "554 5.7.1 &lt;x@example.org&gt;: Relay access denied" from a relay that
    /// wants this service to log in first, or RFC 3463's 5.7.0, 5.7.8 and Microsoft's 5.7.57 (authentication required or
    /// refused). Other 5.7.x refusals ("Recipient address rejected: Access denied", a group closed to outsiders) are the
    /// recipient's, and count.
    /// </summary>
    public static bool IsRecipientsRefusal(SmtpCommandException e) =>
        (int)e.StatusCode >= 500 && e.ErrorCode is SmtpErrorCode.RecipientNotAccepted or SmtpErrorCode.MessageNotAccepted
        && !IsRelayDeclining(e.Message);

    private static bool IsRelayDeclining(string reply) =>
        reply.StartsWith("5.7.0 ", StringComparison.Ordinal) || reply.StartsWith("5.7.8 ", StringComparison.Ordinal)
        || reply.StartsWith("5.7.57 ", StringComparison.Ordinal)
        || (reply.StartsWith("5.7.", StringComparison.Ordinal) && reply.Contains("relay", StringComparison.OrdinalIgnoreCase))
        // Amazon SES, with no enhanced code: a sender or return path not verified in the region (or, in its sandbox, any
        // recipient not verified) refuses every message alike, and would have bounced the whole list.
        || reply.Contains("Email address is not verified", StringComparison.OrdinalIgnoreCase);

    private async Task<bool> SendOnceAsync(
        HeldConnection connection, MimeMessage message, MailboxAddress returnPath, StillWanted? stillWanted, CancellationToken cancellationToken)
    {
        try
        {
            if (connection.Client is { } idle && Environment.TickCount64 - connection.IdleSince > _options.IdleTimeout.TotalMilliseconds)
            {
                // The relay may have hung up on it meanwhile: a fresh connection rather than a failed message.
                connection.Client = null;
                await DisposeQuietlyAsync(idle);
            }
            var client = connection.Client ??= await ConnectAsync(cancellationToken);
            if (stillWanted is not null && !await stillWanted())
            {
                return false;
            }
            await client.SendAsync(message, returnPath, [.. message.To.Mailboxes, .. message.Cc.Mailboxes, .. message.Bcc.Mailboxes], cancellationToken);
            return true;
        }
        catch
        {
            // After a failure the connection's state is unknown (a half-sent DATA, a server that hung
            // up): never reuse it. A retry opens a fresh one.
            if (connection.Client is { } failed)
            {
                connection.Client = null;
                await DisposeQuietlyAsync(failed);
            }
            throw;
        }
    }

    /// <summary>A connection waiting for its next message, and since when (<see cref="Environment.TickCount64"/>).</summary>
    private sealed record IdleConnection(SmtpClient Client, long Since);

    /// <summary>One of the <c>Smtp:Connections</c>, the message's for all its attempts: open, or not yet (re)opened.</summary>
    private sealed class HeldConnection(IdleConnection? idle)
    {
        public SmtpClient? Client { get; set; } = idle?.Client;

        public long IdleSince { get; } = idle?.Since ?? 0;
    }

    private async Task<SmtpClient> ConnectAsync(CancellationToken cancellationToken)
    {
        var host = _options.Host!;
        // Connecting the socket ourselves to switch off Nagle's algorithm: with MailKit's own
        // connect, every message waits ~40 ms for a delayed ACK on Linux.
        var timeout = (int)_options.Timeout.TotalMilliseconds;
        // The timeouts MailKit sets on a NetworkStream of its own; they bound a blocking send (the buffer below flushed
        // when the connection is thrown away) as well.
        var socket = new Socket(SocketType.Stream, ProtocolType.Tcp) { NoDelay = true, SendTimeout = timeout, ReceiveTimeout = timeout };
        var client = new SmtpClient { Timeout = timeout };
        if (_trusted is not null)
        {
            client.ServerCertificateValidationCallback = (_, certificate, chain, errors) => IsTrusted(certificate, chain, errors);
        }
        try
        {
            await socket.ConnectAsync(host, _options.Port, cancellationToken);
            // MailKit writes a message in 4 KB blocks straight to its stream: each a send of its own, and a wake-up of the
            // relay. A buffer in between sends a digest in one. BufferedStream sends what it holds before every read, so each
            // command still goes before its reply is awaited, TLS handshakes included. (MailKit's socket overload is this
            // overload with a NetworkStream.)
            var stream = new BufferedStream(new NetworkStream(socket, ownsSocket: true), MessageBufferBytes);
            await client.ConnectAsync(stream, host, _options.Port, _options.Security, cancellationToken);
            if (!string.IsNullOrEmpty(_options.Username))
            {
                ClearTextLogin.Refuse(client, _options.Security, $"{host}:{_options.Port}", "Smtp:Username's password", "relay", "Smtp:Security", tlsPort: 465);
                await client.AuthenticateAsync(_options.Username, _options.Password ?? "", cancellationToken);
            }
            // SIZE= on MAIL FROM is optional (RFC 1870), and MailKit writes every message once more just to measure it.
            // A digest is a few tens of kilobytes; a relay whose limit it passed would still refuse it, after DATA.
            client.Capabilities &= ~SmtpCapabilities.Size;
            _logger.LogDebug("Opened SMTP connection to {Host}:{Port}", host, _options.Port);
            return client;
        }
        catch
        {
            client.Dispose();
            socket.Dispose();
            throw;
        }
    }

    /// <summary>The system's verdict, or else a chain to <c>Smtp:TrustedCertificatePath</c>; never a certificate for another name.</summary>
    private bool IsTrusted(X509Certificate? certificate, X509Chain? presentedChain, SslPolicyErrors errors)
    {
        if (errors == SslPolicyErrors.None)
        {
            return true;
        }
        if (errors != SslPolicyErrors.RemoteCertificateChainErrors || certificate is null)
        {
            return false;
        }
        using var chain = new X509Chain();
        chain.ChainPolicy.TrustMode = X509ChainTrustMode.CustomRootTrust;
        chain.ChainPolicy.CustomTrustStore.Add(_trusted!);
        chain.ChainPolicy.RevocationMode = X509RevocationMode.NoCheck; // a private CA publishes no revocation list
        if (presentedChain is not null)
        {
            foreach (var element in presentedChain.ChainElements)
            {
                chain.ChainPolicy.ExtraStore.Add(element.Certificate); // the intermediates the relay sent
            }
        }
        if (certificate is X509Certificate2 presented)
        {
            return chain.Build(presented);
        }
        using var loaded = X509CertificateLoader.LoadCertificate(certificate.GetRawCertData());
        return chain.Build(loaded);
    }

    private static async Task DisposeQuietlyAsync(SmtpClient client)
    {
        try
        {
            if (client.IsConnected)
            {
                using var quick = new CancellationTokenSource(TimeSpan.FromSeconds(2));
                await client.DisconnectAsync(quit: true, quick.Token);
            }
        }
        catch (Exception e) when (e is IOException or SocketException or OperationCanceledException or ServiceNotConnectedException or SmtpProtocolException or SmtpCommandException)
        {
            // The connection is being dropped because it already failed; how it ends does not matter.
        }
        try
        {
            client.Dispose();
        }
        catch (Exception e) when (e is IOException or SocketException or ObjectDisposedException)
        {
            // What was left in the send buffer of a failed connection could not go; it did not need to.
        }
    }

    public async ValueTask DisposeAsync()
    {
        _rate?.Dispose();
        _trusted?.Dispose();
        _idle.Writer.TryComplete();
        while (_idle.Reader.TryRead(out var idle))
        {
            if (idle is not null)
            {
                await DisposeQuietlyAsync(idle.Client);
            }
        }
    }
}

/// <summary>Writes each message as an <c>.eml</c> file, for running without a mail server.</summary>
internal sealed class PickupDirectoryMailSender(IOptions<MailOptions> options, ILogger<PickupDirectoryMailSender> logger) : IMailTransport
{
    // The return path is SMTP's alone: a file has no envelope (and a Return-Path header is the receiving server's to add).
    public async Task<bool> SendAsync(MimeMessage message, MailboxAddress returnPath, StillWanted? stillWanted, CancellationToken cancellationToken)
    {
        if (stillWanted is not null && !await stillWanted())
        {
            return false;
        }
        var directory = Path.GetFullPath(options.Value.PickupDirectory);
        Directory.CreateDirectory(directory);
        var name = $"{DateTime.UtcNow:yyyyMMddTHHmmssfff}-{Guid.NewGuid():N}";
        var partial = Path.Combine(directory, name + ".tmp");
        var final = Path.Combine(directory, name + ".eml");

        // Written under another name and renamed, so whatever watches the folder never sees half a message.
        await message.WriteToAsync(partial, cancellationToken);
        File.Move(partial, final);
        logger.LogInformation("Wrote {File} for {Recipients}", final, string.Join(", ", message.To.Mailboxes.Select(m => m.Address)));
        return true;
    }
}
