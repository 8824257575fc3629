using Dapper;
using Microsoft.Extensions.Options;
using MimeKit;
using Npgsql;
using Polly.CircuitBreaker;
using Subscriptions.Email;
using Subscriptions.Infrastructure;
using Subscriptions.Observability;

namespace Subscriptions.Subscribers;

internal sealed class OutboxRow
{
    public long Id { get; set; }
    public string Kind { get; set; } = "";
    public int Attempts { get; set; }
    public long SubscriberId { get; set; }
    public string Email { get; set; } = "";
    public string Status { get; set; } = "";
    public byte[] SubscriptionKey { get; set; } = [];
    public byte[]? ConfirmationNonce { get; set; }
    public DateTime? ConfirmationExpiresAt { get; set; }
    public bool Suppressed { get; set; }
}

/// <summary>
/// Sends the queued transactional emails, one per transaction: the row is locked, the message
/// handed to the mail server, and the outcome recorded before the lock is let go. Another sender
/// (on this or another instance) skips a locked row, so no email is sent twice; the only window
/// left is a crash between the server accepting a message and our commit, one message wide.
/// </summary>
/// <remarks>
/// Why a row lock here and expiring claims for digests (<c>DeliverySender</c>): these emails are few,
/// one at a time, and someone is waiting for each. A lock held by the sending transaction ends the
/// moment its holder dies, so a confirmation is never stranded behind a lease that has to run out or
/// be handed back; what it costs is one pooled connection per instance, idle in a transaction for one
/// message's send at most (a wait for a free SMTP connection, then <c>Smtp:Timeout</c> per attempt, with its retries). Digests are sent in
/// hundreds of thousands by several senders per instance: a transaction per in-flight message would
/// take a connection each, so they claim batches with a lease instead and record each outcome in its
/// own short transaction.
/// </remarks>
internal sealed class EmailOutbox(
    NpgsqlDataSource dataSource, IMailSender sender, LifecycleEmails emails, IOptions<MailOptions> options, IOptions<SmtpOptions> smtpOptions,
    TimeProvider time, ServiceMetrics metrics, ILogger<EmailOutbox> logger)
{
    /// <summary>Sends the next email that is due, if any; returns whether there was one.</summary>
    public async Task<bool> SendNextAsync(CancellationToken cancellationToken)
    {
        await using var connection = await dataSource.OpenConnectionAsync(cancellationToken);
        await using var transaction = await connection.BeginTransactionAsync(cancellationToken);

        const string claim = """
            SELECT o.id, o.kind, o.attempts, s.id AS subscriber_id, s.email, s.status, s.subscription_key,
                   s.confirmation_nonce, s.confirmation_expires_at,
                   EXISTS (SELECT 1 FROM suppressions x WHERE x.email = s.email_key) AS suppressed
            FROM email_outbox o
            JOIN subscribers s ON s.id = o.subscriber_id
            WHERE o.status = 'pending' AND o.next_attempt_at <= @now
            ORDER BY o.next_attempt_at, o.id
            LIMIT 1
            FOR UPDATE OF o SKIP LOCKED
            """;
        var now = time.GetUtcNow();
        var row = await connection.QuerySingleOrDefaultAsync<OutboxRow>(
            new CommandDefinition(claim, new { now }, transaction, cancellationToken: cancellationToken));
        if (row is null)
        {
            return false;
        }

        using var message = Render(row, now);
        if (message is null)
        {
            // The subscriber moved on (confirmed, left, or the link expired) or was suppressed since this was queued.
            await RecordAsync(connection, transaction, "UPDATE email_outbox SET status = 'superseded' WHERE id = @id", new { id = row.Id });
            await transaction.CommitAsync(cancellationToken);
            return true;
        }

        try
        {
            // Not cancelled by shutdown (Smtp:Timeout bounds it): the send in flight is finished and recorded,
            // so a stopping instance never leaves a half-sent confirmation to be sent again.
            await sender.SendAsync(message, CancellationToken.None);
            const string sent = """
                UPDATE email_outbox SET status = 'sent', attempts = attempts + 1, sent_at = @now, message_id = @messageId, last_error = NULL
                WHERE id = @id
                """;
            await RecordAsync(connection, transaction, sent, new { id = row.Id, now = time.GetUtcNow(), messageId = message.MessageId });
            logger.LogInformation("Sent {Kind} email {OutboxId} to subscriber {SubscriberId}", row.Kind, row.Id, row.SubscriberId);
            metrics.EmailSent(row.Kind);
        }
        catch (PermanentMailException e)
        {
            // A warning, as for a digest: anyone can sign up a mistyped or made-up address, and its refusal is no outage.
            await FailAsync(connection, transaction, row, e.Reply, LogLevel.Warning);
            metrics.EmailFailed(row.Kind, "refused");
        }
        catch (BrokenCircuitException) when (!cancellationToken.IsCancellationRequested)
        {
            // Not tried: the relay is failing everyone. As for digests, this costs no attempt, or an outage of some hours would
            // use up the confirmations' attempts and leave those who signed up with none.
            const string wait = "UPDATE email_outbox SET next_attempt_at = @next, last_error = @error WHERE id = @id";
            await RecordAsync(connection, transaction, wait,
                new { id = row.Id, next = time.GetUtcNow() + smtpOptions.Value.BreakDuration, error = "the mail server is unavailable (circuit open)" });
        }
        catch (Exception e) when (!cancellationToken.IsCancellationRequested)
        {
            var attempts = row.Attempts + 1;
            if (attempts >= options.Value.MaxAttempts)
            {
                await FailAsync(connection, transaction, row, e.Message, LogLevel.Error);
                metrics.EmailFailed(row.Kind, "attempts");
            }
            else
            {
                var delay = RetryBackoff.After(attempts, options.Value.RetryDelay);
                const string retry = """
                    UPDATE email_outbox SET attempts = attempts + 1, next_attempt_at = @next, last_error = @error WHERE id = @id
                    """;
                await RecordAsync(connection, transaction, retry, new { id = row.Id, next = time.GetUtcNow() + delay, error = e.Message });
                logger.LogWarning("Could not send {Kind} email {OutboxId} (attempt {Attempt}), retrying in {Delay}: {Error}",
                    row.Kind, row.Id, attempts, delay, e.Message);
            }
        }

        await transaction.CommitAsync(CancellationToken.None);
        return true;
    }

    private MimeMessage? Render(OutboxRow row, DateTimeOffset now) => row switch
    {
        { Suppressed: true } => null,
        { Kind: EmailQueue.Confirmation, Status: "pending", ConfirmationNonce: { } nonce, ConfirmationExpiresAt: { } expiresAt }
            when expiresAt > now.UtcDateTime => emails.Confirmation(row.Id, row.Email, row.SubscriberId, nonce,
                new DateTimeOffset(DateTime.SpecifyKind(expiresAt, DateTimeKind.Utc))),
        { Kind: EmailQueue.AlreadySubscribed, Status: "active" } => emails.AlreadySubscribed(row.Id, row.Email, row.SubscriberId, row.SubscriptionKey),
        _ => null,
    };

    private async Task FailAsync(NpgsqlConnection connection, NpgsqlTransaction transaction, OutboxRow row, string error, LogLevel level)
    {
        const string failed = "UPDATE email_outbox SET status = 'failed', attempts = attempts + 1, last_error = @error WHERE id = @id";
        await RecordAsync(connection, transaction, failed, new { id = row.Id, error });
        logger.Log(level, "Gave up on {Kind} email {OutboxId} to subscriber {SubscriberId}: {Error}", row.Kind, row.Id, row.SubscriberId, error);
    }

    // The outcome is recorded even when shutdown has begun: the message may already be with the server.
    private static Task RecordAsync(NpgsqlConnection connection, NpgsqlTransaction transaction, string sql, object parameters) =>
        connection.ExecuteAsync(new CommandDefinition(sql, parameters, transaction, cancellationToken: CancellationToken.None));
}

/// <summary>Wakes the outbox worker as soon as something is queued.</summary>
internal sealed class OutboxSignal : WakeSignal;

internal sealed class EmailOutboxWorker(EmailOutbox outbox, OutboxSignal signal, IOptions<MailOptions> options, ILogger<EmailOutboxWorker> logger)
    : PollingWorker(signal, logger)
{
    protected override TimeSpan PollInterval => options.Value.PollInterval;

    protected override async Task<bool> WorkAsync(CancellationToken stoppingToken)
    {
        while (await outbox.SendNextAsync(stoppingToken))
        {
        }
        return true;
    }
}
