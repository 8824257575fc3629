using System.Collections.Concurrent;
using Dapper;
using Microsoft.Extensions.Options;
using Npgsql;
using Polly.CircuitBreaker;
using Subscriptions.Database;
using Subscriptions.Email;
using Subscriptions.Infrastructure;
using Subscriptions.Observability;
using Subscriptions.Papers;

namespace Subscriptions.Digest;

internal sealed class ClaimedDelivery
{
    public long Id { get; set; }
    public long SubscriberId { get; set; }
    public DateOnly Day { get; set; }
    public string Papers { get; set; } = "[]";
    public int Attempts { get; set; }
    public string Email { get; set; } = "";
    public string SubscriberStatus { get; set; } = "";
    public byte[] SubscriptionKey { get; set; } = [];
}

/// <summary>Running totals of one sending run.</summary>
internal sealed class SendCounters
{
    private long _sent, _failed, _skipped, _retrying;

    public long Sent => Interlocked.Read(ref _sent);
    public long Failed => Interlocked.Read(ref _failed);
    public long Skipped => Interlocked.Read(ref _skipped);
    public long Retrying => Interlocked.Read(ref _retrying);

    /// <summary>Deliveries this run has acted on: sent, failed, skipped or put back for a retry.</summary>
    public long ActedOn => Sent + Failed + Skipped + Retrying;

    public void AddSent() => Interlocked.Increment(ref _sent);
    public void AddFailed() => Interlocked.Increment(ref _failed);
    public void AddSkipped() => Interlocked.Increment(ref _skipped);
    public void AddRetrying() => Interlocked.Increment(ref _retrying);
}

/// <summary>
/// Sends planned deliveries. Each sender claims a batch (<c>FOR UPDATE SKIP LOCKED</c>, marking the rows
/// <c>sending</c> until <c>Digest:ClaimTimeout</c>), then for each row sends the email and records the
/// outcome at once. Senders on every instance share the work and never take the same row. If a
/// sender dies, its unsent rows are claimed again after the timeout; only the one message it was
/// sending when it died can have reached the server unrecorded.
/// </summary>
internal sealed class DeliverySender(
    NpgsqlDataSource dataSource, IMailSender mailSender, DigestEmails emails, PaperStore papers,
    IOptions<DigestOptions> digestOptions, IOptions<SmtpOptions> smtpOptions, TimeProvider time, ServiceMetrics metrics, ILogger<DeliverySender> logger)
{
    private static readonly string InstanceId = $"{Environment.MachineName}/{Environment.ProcessId}/{Guid.NewGuid().ToString("N")[..8]}";
    private readonly ConcurrentDictionary<DateOnly, Lazy<Task<Dictionary<long, DayPaper>>>> _papersOfDay = new();

    /// <summary>
    /// Sends what is due now (of <paramref name="days"/>, or of any day) with two senders per SMTP
    /// connection side by side, until nothing due is left to claim.
    /// </summary>
    public async Task SendDueAsync(IReadOnlyList<DateOnly>? days, SendCounters counters, CancellationToken cancellationToken)
    {
        _papersOfDay.Clear(); // papers may have been re-ingested since the last run
        // A pass starts past every delivery no longer queued (all earlier days' among them): its claims' walk of the
        // deliveries' key starts there. Asked once a pass; asked in every claim, it walked the queue's index over the
        // entries of every delivery sent since the index was last vacuumed (a third of a claim's buffers, 80,000 emails
        // into a 100,000 run).
        var frontier = new ClaimFrontier(await OldestQueuedAsync(cancellationToken) - 1, digestOptions.Value.PollInterval, time);
        // Two senders per SMTP connection: while one waits for the database to record its outcome,
        // the other has the connection. Each still has at most one message in flight.
        var senders = Enumerable.Range(1, SenderCount())
            .Select(n => SendLoopAsync(days?.ToArray(), $"{InstanceId}#{n}", frontier, counters, cancellationToken));
        await Task.WhenAll(senders);
    }

    /// <summary>
    /// Connections of the pool left to all but the senders: planning a slot holds four at once (its read, two writers, the
    /// matcher's), and the web, the confirmation outbox, Quartz, the health checks, Retention and the bounce reader need theirs.
    /// With only four left, Smtp:Connections=10 on the default pool had hourly planning take the rest, and web requests and
    /// readiness waited for a connection until they failed.
    /// </summary>
    internal const int ConnectionsLeftToOthers = 10;

    private int _senderCountLogged;

    /// <summary>
    /// Two senders per SMTP connection, as many as the database pool allows: each holds a connection for its whole pass, and
    /// with every connection held the first sender to load a day's papers would wait for one that never came.
    /// </summary>
    private int SenderCount()
    {
        var wanted = smtpOptions.Value.Connections * 2;
        var poolSize = new NpgsqlConnectionStringBuilder(dataSource.ConnectionString).MaxPoolSize;
        var senders = Math.Clamp(poolSize - ConnectionsLeftToOthers, 1, wanted);
        if (senders < wanted && Interlocked.Exchange(ref _senderCountLogged, 1) == 0)
        {
            logger.LogWarning(
                "Sending with {Senders} senders, not {Wanted} (two per Smtp:Connections): the database pool has {PoolSize} connections and " +
                "each sender holds one; raise Maximum Pool Size in the connection string to {Needed} for all of them",
                senders, wanted, poolSize, wanted + ConnectionsLeftToOthers);
        }
        return senders;
    }

    /// <summary>
    /// The highest delivery id claimed by the senders of one pass: each claim starts past it, rather than past the
    /// sender's own last batch, so that it does not walk again over the rows the others have claimed since. Once every
    /// <paramref name="lookBackEvery"/> (<c>Digest:PollInterval</c>) one claim starts from the oldest queued delivery
    /// instead: deliveries behind the frontier became due again meanwhile (handed back by an instance that stopped, a claim
    /// run out, a retry), and a long pass would otherwise leave them until it ends, an hour later at a throttled relay. A look
    /// back that fills its batch behind the frontier goes on with the next claim, until it has caught up.
    /// </summary>
    private sealed class ClaimFrontier(long start, TimeSpan lookBackEvery, TimeProvider time)
    {
        private long _id = start;
        private long _lookedBackAt = time.GetTimestamp();
        private long _lookBackGoesOnAfter;

        public long Id => Interlocked.Read(ref _id);

        /// <summary>
        /// True for one caller once <c>lookBackEvery</c> has passed since the last look back, or when a look back goes on; then
        /// <paramref name="after"/> is where it goes on from, or 0 for the oldest queued delivery.
        /// </summary>
        public bool TakeLookBack(out long after)
        {
            after = Interlocked.Exchange(ref _lookBackGoesOnAfter, 0);
            if (after > 0)
            {
                return true;
            }
            var last = Interlocked.Read(ref _lookedBackAt);
            return time.GetElapsedTime(last) >= lookBackEvery && Interlocked.CompareExchange(ref _lookedBackAt, time.GetTimestamp(), last) == last;
        }

        public void GoOnLookingBackAfter(long id) => Interlocked.Exchange(ref _lookBackGoesOnAfter, id);

        public void MovePast(long id)
        {
            long seen;
            while ((seen = Interlocked.Read(ref _id)) < id && Interlocked.CompareExchange(ref _id, id, seen) != seen)
            {
            }
        }
    }

    /// <summary>Who paused sending (the console's switch, which every claim obeys), or null while it is not paused.</summary>
    public async Task<string?> PausedByAsync(CancellationToken cancellationToken)
    {
        const string sql = "SELECT CASE WHEN paused THEN coalesce(changed_by, 'an operator') END FROM sending_control";
        await using var connection = await dataSource.OpenConnectionAsync(cancellationToken);
        return await connection.ExecuteScalarAsync<string?>(new CommandDefinition(sql, cancellationToken: cancellationToken));
    }

    /// <summary>When the next of the days' open deliveries is due, or null when every one is sent, failed or skipped.</summary>
    public async Task<DateTimeOffset?> NextDueAsync(IReadOnlyList<DateOnly> days, CancellationToken cancellationToken)
    {
        const string sql = """
            SELECT min(CASE WHEN d.status = 'pending' THEN d.next_attempt_at ELSE d.claimed_until END)
            FROM delivery_queue q JOIN deliveries d ON d.id = q.delivery_id
            WHERE q.day = ANY(@days)
            """;
        await using var connection = await dataSource.OpenConnectionAsync(cancellationToken);
        var next = await connection.ExecuteScalarAsync<DateTime?>(new CommandDefinition(sql, new { days = days.ToArray() }, cancellationToken: cancellationToken));
        return next is { } value ? new DateTimeOffset(DateTime.SpecifyKind(value, DateTimeKind.Utc)) : null;
    }

    private async Task<long> OldestQueuedAsync(CancellationToken cancellationToken)
    {
        await using var connection = await dataSource.OpenConnectionAsync(cancellationToken);
        return await OldestQueuedAsync(connection, cancellationToken);
    }

    private static Task<long> OldestQueuedAsync(NpgsqlConnection connection, CancellationToken cancellationToken) =>
        connection.ExecuteScalarAsync<long>(new CommandDefinition(
            "SELECT coalesce(min(delivery_id), 0) FROM delivery_queue", cancellationToken: cancellationToken));

    public async Task<long> CountOpenAsync(IReadOnlyList<DateOnly> days, CancellationToken cancellationToken)
    {
        const string sql = "SELECT count(*) FROM delivery_queue WHERE day = ANY(@days)";
        await using var connection = await dataSource.OpenConnectionAsync(cancellationToken);
        return await connection.ExecuteScalarAsync<long>(new CommandDefinition(sql, new { days = days.ToArray() }, cancellationToken: cancellationToken));
    }

    private async Task SendLoopAsync(DateOnly[]? days, string sender, ClaimFrontier frontier, SendCounters counters, CancellationToken cancellationToken)
    {
        // One connection per sender for its whole run: the statements around each send are the hot path. They are prepared
        // by Npgsql's automatic preparation (Max Auto Prepare), as every frequent statement is, and not here: a statement
        // prepared explicitly exists on one server connection, and behind PgBouncer in transaction mode (before 1.21) the
        // next sender's prepare met it on another ("42P05: prepared statement already exists") and sending stopped.
        await using var connection = await dataSource.OpenConnectionAsync(cancellationToken);
        // Before a message goes (once it has its SMTP connection, or as the message before it in the batch is recorded):
        // is the delivery still there and its subscriber still to be mailed? The answer holds until the outcome is
        // recorded: the check opens a transaction that holds the subscriber's deletion lock shared, so their erasure
        // waits for the send in flight (one message) and nothing goes out after it. The lock is taken before the query,
        // whose snapshot then sees an erasure committed while it waited. (A key-share lock on the subscriber's row did
        // this, and wrote that row for every email.) An unsubscribe or suppression since the claim is seen here too.
        // And the delivery must still be this sender's, for longer than the send can take: a claim runs out after
        // Digest:ClaimTimeout (a throttled or slow batch can outlast it), and another sender may then have taken the row.
        NpgsqlBatchCommand[] LockAndCheck() =>
        [
            new("BEGIN"),
            new(SubscriberDeletion.WaitForDeletionOfOne) { Parameters = { new NpgsqlParameter<long>() } },
            new("""
                SELECT s.status = 'active' AND NOT EXISTS (SELECT 1 FROM suppressions x WHERE x.email = s.email_key),
                       d.status = 'sending' AND d.claimed_by = $2 AND d.claimed_until > $3
                FROM deliveries d JOIN subscribers s ON s.id = d.subscriber_id
                WHERE d.id = $1
                """) { Parameters = { new NpgsqlParameter<long>(), new NpgsqlParameter<string> { TypedValue = sender }, new NpgsqlParameter<DateTimeOffset>() } },
        ];
        static NpgsqlBatchCommand[] RecordSentAndCommit() =>
        [
            new("""
                WITH finished AS (DELETE FROM delivery_queue WHERE delivery_id = $3)
                UPDATE deliveries
                SET status = 'sent', attempts = attempts + 1, sent_at = $1, message_id = $2, claimed_until = NULL, last_error = NULL
                WHERE id = $3
                """) { Parameters = { new NpgsqlParameter<DateTimeOffset>(), new NpgsqlParameter<string>(), new NpgsqlParameter<long>() } },
            new("COMMIT"),
        ];
        // The third is one round trip where there would be two: a sent message's outcome is committed, and the check of the
        // batch's next delivery opens the next transaction, before that message waits for an SMTP connection.
        await using var statements = new SendStatements(
            LockIfStillWanted: Batch(connection, LockAndCheck()),
            RecordSent: Batch(connection, RecordSentAndCommit()),
            RecordSentThenLockNext: Batch(connection, [.. RecordSentAndCommit(), .. LockAndCheck()]));

        // Each pass moves forward through the table, past what this pass's senders have claimed; rows behind that become
        // due again (handed back, retries, expired claims) are taken by a claim that looks back, once a poll interval.
        while (!cancellationToken.IsCancellationRequested)
        {
            var lookingBack = frontier.TakeLookBack(out var goOnAfter);
            var after = !lookingBack ? frontier.Id : goOnAfter > 0 ? goOnAfter : await OldestQueuedAsync(connection, cancellationToken) - 1;
            var batch = await ClaimAsync(connection, days, after, sender, cancellationToken);
            if (batch.Count == 0)
            {
                return;
            }
            if (lookingBack && batch.Count == digestOptions.Value.BatchSize && batch[^1].Id < frontier.Id)
            {
                frontier.GoOnLookingBackAfter(batch[^1].Id);
            }
            frontier.MovePast(batch[^1].Id);
            using var handBack = new HandBackOnStop(batch, ids => ReleaseQuietlyAsync(sender, ids), cancellationToken);
            StillWantedCheck? checkedAhead = null; // of batch[i], asked when the message before it was recorded
            for (var i = 0; i < batch.Count; i++)
            {
                var following = i + 1 < batch.Count ? batch[i + 1] : null;
                var outcome = SendOutcome.Stopping;
                try
                {
                    if (handBack.TryBegin(i))
                    {
                        (outcome, checkedAhead) = await SendOneAsync(connection, statements, sender, batch[i], checkedAhead, following, counters, cancellationToken);
                    }
                    else if (checkedAhead is not null)
                    {
                        await checkedAhead.EndAsync(connection); // nothing was sent under it
                    }
                }
                catch (Exception e) when (e is not OperationCanceledException)
                {
                    // The database failed this sender (its recorded outcomes are committed): what it had not sent is handed
                    // back at once if the database lets it, rather than waiting for the claim to run out.
                    await ReleaseQuietlyAsync(sender, batch.Skip(i + 1).Select(d => d.Id).ToArray());
                    throw;
                }
                if (outcome != SendOutcome.Recorded)
                {
                    // Stopping, the mail server down, or the claim run short: this delivery and the rest go back unsent.
                    await ReleaseAsync(connection, sender, batch.Skip(i).Select(d => d.Id).ToArray());
                    if (outcome == SendOutcome.ClaimRunShort)
                    {
                        logger.LogInformation("{Sender}'s claim on {Count} deliveries ran short of the time a send can take; handed them back",
                            sender, batch.Count - i);
                    }
                    if (outcome == SendOutcome.ServerDown)
                    {
                        // This sender's pass ends after the pause: its claims look back for what is due, and during an
                        // outage they would meet their own deliveries, handed back, for as long as it lasts.
                        await Task.Delay(smtpOptions.Value.BreakDuration, cancellationToken);
                        return;
                    }
                    break;
                }
            }
        }
    }

    private async Task<List<ClaimedDelivery>> ClaimAsync(
        NpgsqlConnection connection, DateOnly[]? days, long after, string sender, CancellationToken cancellationToken)
    {
        // Due pending rows, and rows whose sender's claim ran out (it died mid-batch); none while an operator
        // has paused sending (sending_control, read at every claim, so every instance obeys). A suppressed address
        // comes back as not active, so its delivery is skipped like that of someone who left. The deliveries' id is
        // bounded too: PostgreSQL carries the join's equality across, not the inequality, and its generic plan walks the
        // deliveries' key from where the bound says (a pass's first claim from just before the oldest queued delivery).
        const string sql = """
            WITH claimable AS (
                SELECT d.id FROM delivery_queue q JOIN deliveries d ON d.id = q.delivery_id
                WHERE q.delivery_id > @after AND d.id > @after
                  AND (@days::date[] IS NULL OR q.day = ANY(@days))
                  AND CASE WHEN d.status = 'pending' THEN d.next_attempt_at ELSE d.claimed_until END <= @now
                  AND NOT (SELECT paused FROM sending_control)
                ORDER BY q.delivery_id
                LIMIT @batchSize
                FOR UPDATE OF d SKIP LOCKED
            )
            UPDATE deliveries d
            SET status = 'sending', claimed_by = @sender, claimed_until = @until
            FROM claimable c, subscribers s
            WHERE d.id = c.id AND s.id = d.subscriber_id
            RETURNING d.id, d.subscriber_id, d.day, d.papers::text AS papers, d.attempts, s.email, s.subscription_key,
                      CASE WHEN EXISTS (SELECT 1 FROM suppressions x WHERE x.email = s.email_key) THEN 'suppressed' ELSE s.status END AS subscriber_status
            """;
        var now = time.GetUtcNow();
        var options = digestOptions.Value;
        var rows = await connection.QueryAsync<ClaimedDelivery>(new CommandDefinition(
            sql, new { days, after, now, sender, until = now + options.ClaimTimeout, batchSize = options.BatchSize }, cancellationToken: cancellationToken));
        return [.. rows.OrderBy(row => row.Id)];
    }

    private enum SendOutcome
    {
        /// <summary>Sent, refused, failed or skipped, and recorded: on to the next.</summary>
        Recorded,

        /// <summary>Not tried, nothing recorded: the service is stopping.</summary>
        Stopping,

        /// <summary>Not tried, nothing recorded: the mail server is down (circuit open), and sending pauses.</summary>
        ServerDown,

        /// <summary>Not tried, nothing recorded: the delivery is no longer this sender's for as long as a send can take.</summary>
        ClaimRunShort,
    }

    /// <summary>
    /// Sends one delivery and records what happened. When it was sent and the <paramref name="following"/> delivery is to be
    /// sent too, that one's check is asked in the same round trip as the outcome is recorded, and returned.
    /// </summary>
    private async Task<(SendOutcome Outcome, StillWantedCheck? FollowingCheck)> SendOneAsync(
        NpgsqlConnection connection, SendStatements statements, string sender, ClaimedDelivery delivery, StillWantedCheck? check, ClaimedDelivery? following,
        SendCounters counters, CancellationToken stopping)
    {
        if (delivery.SubscriberStatus != "active")
        {
            await RecordSkippedAsync(connection, delivery.Id);
            counters.AddSkipped();
            return (SendOutcome.Recorded, null);
        }

        var planned = PlannedPaper.Deserialize(delivery.Papers);
        var papersShown = new Dictionary<long, DayPaper>(planned.Count);
        foreach (var paper in planned)
        {
            var day = paper.Day ?? delivery.Day;
            var dayPapers = await PapersOfDayAsync(day);
            if (dayPapers.TryGetValue(paper.PaperId, out var shown)
                || (await ReloadPapersOfDayAsync(day, dayPapers)).TryGetValue(paper.PaperId, out shown))
            {
                papersShown[paper.PaperId] = shown;
            }
        }
        // Disposed once sent: MimeKit's messages, parts and contents have finalizers, and each undisposed one kept its email's
        // ~40 KB alive through a collection (every collection became a gen1 one, and ~11 % of the run was spent paused).
        using var message = emails.Render(delivery.Id, delivery.Email, delivery.SubscriberId, delivery.SubscriptionKey, delivery.Day, planned, papersShown);
        check ??= new StillWantedCheck(statements.LockIfStillWanted, delivery.Id, delivery.SubscriberId, SendDeadline);
        var stopped = false;
        ValueTask<bool> StillWantedUnlessStopping()
        {
            // Asked once the message has its connection: stopping while it waited for one (or for its turn under
            // Smtp:MaxPerSecond), it was not in flight yet, and goes back with the rest of the batch.
            if (stopping.IsCancellationRequested)
            {
                stopped = true;
                return ValueTask.FromResult(false);
            }
            return check.AskAsync();
        }
        bool sent;
        try
        {
            // Not cancelled by shutdown: a message half-sent when the process stops is the one case that
            // could reach the server unrecorded, so the send in flight is always finished and recorded.
            sent = await mailSender.SendAsync(message, StillWantedUnlessStopping, CancellationToken.None);
        }
        catch (PermanentMailException e)
        {
            // The check's transaction (and its lock on the subscriber's erasure) ends first: recording the refusal writes
            // the subscriber's row, which an erasure waiting on that lock holds locked, and the two would deadlock.
            // Nothing reached the subscriber, so nothing needs the lock any more. (The record then waits for the erasure.)
            await check.EndAsync(connection);
            await RecordPermanentFailureAsync(connection, delivery, e.Reply);
            counters.AddFailed();
            metrics.EmailFailed("digest", "refused");
            return (SendOutcome.Recorded, null);
        }
        catch (BrokenCircuitException)
        {
            // The relay is failing everyone (the circuit opened, maybe during this message's own retries): it costs the
            // delivery no attempt, or an outage of a few hours would use up every delivery's attempts. Why it waits is
            // recorded with it, for the operator.
            await RecordAsync(connection, "UPDATE deliveries SET last_error = @error WHERE id = @id AND status = 'sending' AND claimed_by = @sender",
                new { id = delivery.Id, sender, error = "the mail server is unavailable (circuit open)" });
            await check.EndAsync(connection);
            logger.LogWarning("The mail server is unavailable (circuit open): sending pauses for {BreakDuration}", smtpOptions.Value.BreakDuration);
            return (SendOutcome.ServerDown, null);
        }
        catch (Exception e) when (e is not NpgsqlException && (e is not OperationCanceledException || e is Polly.Timeout.TimeoutRejectedException))
        {
            await RecordTransientFailureAsync(connection, sender, delivery, e.Message, counters);
            await check.EndAsync(connection);
            return (SendOutcome.Recorded, null);
        }

        if (!sent)
        {
            if (stopped)
            {
                await check.EndAsync(connection); // asked ahead, with the message before it, perhaps
                return (SendOutcome.Stopping, null);
            }
            if (check.ClaimRunShort)
            {
                await check.EndAsync(connection);
                return (SendOutcome.ClaimRunShort, null);
            }
            if (check.DeliveryExists)
            {
                await RecordSkippedAsync(connection, delivery.Id); // unsubscribed or suppressed since the claim
            }
            await check.EndAsync(connection); // otherwise erased with its subscriber: nothing left to record
            counters.AddSkipped();
            return (SendOutcome.Recorded, null);
        }

        // The outcome is committed at once, whether or not the next check rides with it: a message sent and not yet
        // recorded is what a crash would send twice. The lock the next check takes is then held while that message
        // waits for a connection (bounded by the attempts of the message that has it) as well as while it is sent.
        StillWantedCheck? followingCheck = null;
        var record = statements.RecordSent;
        // Not when throttled: the next message may then wait seconds for its turn, and an erasure with it.
        if (following is { SubscriberStatus: "active" } && !smtpOptions.Value.IsThrottled)
        {
            record = statements.RecordSentThenLockNext;
            followingCheck = new StillWantedCheck(statements.LockIfStillWanted, following.Id, following.SubscriberId, SendDeadline);
        }
        record.BatchCommands[0].Parameters[0].Value = time.GetUtcNow();
        record.BatchCommands[0].Parameters[1].Value = message.MessageId;
        record.BatchCommands[0].Parameters[2].Value = delivery.Id;
        if (followingCheck is null)
        {
            await record.ExecuteNonQueryAsync(CancellationToken.None); // and commits the check's transaction
        }
        else
        {
            await followingCheck.AskWithAsync(record);
        }
        counters.AddSent();
        metrics.EmailSent("digest");
        return (SendOutcome.Recorded, followingCheck);
    }

    /// <summary>A delivery checked now must stay its sender's until then: the longest its send can take, retries and all.</summary>
    private DateTimeOffset SendDeadline() => time.GetUtcNow() + smtpOptions.Value.LongestSend;

    private static Task RecordSkippedAsync(NpgsqlConnection connection, long deliveryId) => RecordAsync(connection, """
        DELETE FROM delivery_queue WHERE delivery_id = @id;
        UPDATE deliveries SET status = 'skipped', claimed_until = NULL WHERE id = @id;
        """, new { id = deliveryId });

    private static NpgsqlBatch Batch(NpgsqlConnection connection, IEnumerable<NpgsqlBatchCommand> commands)
    {
        var batch = new NpgsqlBatch(connection);
        foreach (var command in commands)
        {
            batch.BatchCommands.Add(command);
        }
        return batch;
    }

    /// <summary>The statements around each send, made once for the sender's connection.</summary>
    private sealed record SendStatements(NpgsqlBatch LockIfStillWanted, NpgsqlBatch RecordSent, NpgsqlBatch RecordSentThenLockNext) : IAsyncDisposable
    {
        public async ValueTask DisposeAsync()
        {
            await LockIfStillWanted.DisposeAsync();
            await RecordSent.DisposeAsync();
            await RecordSentThenLockNext.DisposeAsync();
        }
    }

    /// <summary>
    /// The last-moment check of one delivery: the first ask opens the transaction (and takes the lock) that the
    /// delivery's recorded outcome commits; a retry of the same send asks again and gets the same answer.
    /// </summary>
    private sealed class StillWantedCheck(NpgsqlBatch lockIfStillWanted, long deliveryId, long subscriberId, Func<DateTimeOffset> sendDeadline)
    {
        private bool _asked;
        private bool _wanted;

        /// <summary>False when the delivery was erased with its subscriber (known once asked).</summary>
        public bool DeliveryExists { get; private set; }

        /// <summary>
        /// The delivery is no longer its sender's, or not for as long as the send could take (known once asked): it was not
        /// sent, and nothing is to be recorded for it.
        /// </summary>
        public bool ClaimRunShort { get; private set; }

        public async ValueTask<bool> AskAsync()
        {
            if (!_asked)
            {
                await AskWithAsync(lockIfStillWanted);
            }
            return _wanted;
        }

        /// <summary>Asks with <paramref name="batch"/>, whose last two statements are the lock and the check.</summary>
        public async Task AskWithAsync(NpgsqlBatch batch)
        {
            batch.BatchCommands[^2].Parameters[0].Value = subscriberId;
            batch.BatchCommands[^1].Parameters[0].Value = deliveryId;
            batch.BatchCommands[^1].Parameters[2].Value = sendDeadline();
            // Uncancelled, like the send it guards: the transaction it opens must end in a recorded outcome.
            await using var reader = await batch.ExecuteReaderAsync(CancellationToken.None);
            await reader.NextResultAsync(CancellationToken.None); // past the lock's row, to the check's
            _asked = true;
            DeliveryExists = await reader.ReadAsync(CancellationToken.None);
            ClaimRunShort = DeliveryExists && !reader.GetBoolean(1);
            _wanted = DeliveryExists && !ClaimRunShort && reader.GetBoolean(0);
        }

        /// <summary>Commits what was recorded since the check (nothing to do if it was never asked).</summary>
        public Task EndAsync(NpgsqlConnection connection) => _asked ? RecordAsync(connection, "COMMIT", new { }) : Task.CompletedTask;
    }

    private async Task RecordPermanentFailureAsync(NpgsqlConnection connection, ClaimedDelivery delivery, string reply)
    {
        // The subscriber's row first, in the order an erasure takes them (the subscriber, then their deliveries): an erasure
        // that holds the row is waited for before this locks any delivery it is about to delete. The other way round, the
        // two deadlocked.
        const string failed = """
            UPDATE subscribers
            SET permanent_failures = permanent_failures + 1,
                status = CASE WHEN permanent_failures + 1 >= @bounceAfter AND status = 'active' THEN 'bounced' ELSE status END,
                updated_at = @now
            WHERE id = @subscriberId;
            DELETE FROM delivery_queue WHERE delivery_id = @id;
            UPDATE deliveries SET status = 'failed', attempts = attempts + 1, last_error = @reply, claimed_until = NULL WHERE id = @id;
            """;
        await RecordAsync(connection, failed, new
        {
            id = delivery.Id,
            reply,
            subscriberId = delivery.SubscriberId,
            bounceAfter = digestOptions.Value.BounceAfter,
            now = time.GetUtcNow(),
        });
        logger.LogWarning("Delivery {DeliveryId} to subscriber {SubscriberId} refused: {Reply}", delivery.Id, delivery.SubscriberId, reply);
    }

    /// <summary>
    /// Only while the delivery is still this sender's: a failure to connect comes before the check that the claim holds, and
    /// a claim that ran out may be another sender's by now (sent, or in flight there), which this must not reset.
    /// </summary>
    private async Task RecordTransientFailureAsync(NpgsqlConnection connection, string sender, ClaimedDelivery delivery, string error, SendCounters counters)
    {
        var attempts = delivery.Attempts + 1;
        var givingUp = attempts >= digestOptions.Value.MaxAttempts;
        var delay = RetryBackoff.After(attempts, digestOptions.Value.RetryDelay);
        const string failed = """
            WITH failed AS (
                UPDATE deliveries SET status = 'failed', attempts = @attempts, last_error = @error, claimed_until = NULL
                WHERE id = @id AND status = 'sending' AND claimed_by = @sender
                RETURNING id),
            dequeued AS (DELETE FROM delivery_queue WHERE delivery_id IN (SELECT id FROM failed))
            SELECT count(*) FROM failed
            """;
        const string retry = """
            WITH retried AS (
                UPDATE deliveries SET status = 'pending', attempts = @attempts, last_error = @error, next_attempt_at = @next, claimed_until = NULL
                WHERE id = @id AND status = 'sending' AND claimed_by = @sender
                RETURNING id)
            SELECT count(*) FROM retried
            """;
        var recorded = await connection.ExecuteScalarAsync<long>(new CommandDefinition(givingUp ? failed : retry,
            new { id = delivery.Id, sender, attempts, error, next = time.GetUtcNow() + delay }, cancellationToken: CancellationToken.None));
        if (recorded == 0)
        {
            logger.LogWarning("Delivery {DeliveryId} failed ({Error}), but is no longer this sender's claim; its failure is not recorded", delivery.Id, error);
        }
        else if (givingUp)
        {
            counters.AddFailed();
            metrics.EmailFailed("digest", "attempts");
            logger.LogError("Gave up on delivery {DeliveryId} after {Attempts} attempts: {Error}", delivery.Id, attempts, error);
        }
        else
        {
            counters.AddRetrying();
            logger.LogWarning("Delivery {DeliveryId} failed (attempt {Attempt}), retrying in {Delay}: {Error}", delivery.Id, attempts, delay, error);
        }
    }

    /// <summary>
    /// On stop, hands back at once what of a batch its sender has not begun: the message in flight can take a whole send
    /// (<c>Smtp:Timeout</c> and its retries), longer than the shutdown timeout, and the rest of the batch stayed claimed until
    /// the claim ran out. The sender begins each delivery through <see cref="TryBegin"/>, so none is handed back as it is sent.
    /// </summary>
    private sealed class HandBackOnStop : IDisposable
    {
        private readonly Lock _gate = new();
        private readonly CancellationTokenRegistration _registration;
        private int _begun = -1;
        private bool _stopped;

        public HandBackOnStop(IReadOnlyList<ClaimedDelivery> batch, Func<long[], Task> handBack, CancellationToken stopping) =>
            _registration = stopping.Register(() =>
            {
                int notBegun;
                lock (_gate)
                {
                    _stopped = true;
                    notBegun = _begun + 1;
                }
                if (notBegun < batch.Count)
                {
                    _ = handBack([.. batch.Skip(notBegun).Select(delivery => delivery.Id)]); // logs its own failure
                }
            });

        /// <summary>False once stopping: the delivery at <paramref name="index"/> and those after it are handed back.</summary>
        public bool TryBegin(int index)
        {
            lock (_gate)
            {
                if (!_stopped)
                {
                    _begun = index;
                }
                return !_stopped;
            }
        }

        public void Dispose() => _registration.Dispose();
    }

    // Only what is still this sender's: a row whose claim ran out may be another sender's by now, and in flight there.
    private static Task ReleaseAsync(NpgsqlConnection connection, string sender, long[] ids) => ids.Length == 0
        ? Task.CompletedTask
        : RecordAsync(connection,
            "UPDATE deliveries SET status = 'pending', claimed_until = NULL WHERE id = ANY(@ids) AND status = 'sending' AND claimed_by = @sender",
            new { ids, sender });

    private async Task ReleaseQuietlyAsync(string sender, long[] ids)
    {
        try
        {
            await using var connection = await dataSource.OpenConnectionAsync(CancellationToken.None);
            await ReleaseAsync(connection, sender, ids);
        }
        catch (Exception e) when (e is NpgsqlException or TimeoutException or InvalidOperationException)
        {
            logger.LogWarning(e, "Could not hand back {Count} claimed deliveries; they are claimed again once the claim runs out", ids.Length);
        }
    }

    // Outcomes are recorded even while shutting down: the message is already with the server.
    private static Task RecordAsync(NpgsqlConnection connection, string sql, object parameters) =>
        connection.ExecuteAsync(new CommandDefinition(sql, parameters, cancellationToken: CancellationToken.None));

    /// <summary>A day's papers, loaded once a pass for all its senders; a load that failed is not kept, and the next asks again.</summary>
    private async Task<Dictionary<long, DayPaper>> PapersOfDayAsync(DateOnly day)
    {
        var load = _papersOfDay.GetOrAdd(day, day => new(() => LoadPapersAsync(day)));
        try
        {
            return await load.Value;
        }
        catch
        {
            _papersOfDay.TryRemove(KeyValuePair.Create(day, load));
            throw;
        }
    }

    /// <summary>
    /// The day's papers loaded again, when <paramref name="stale"/> lacks one a delivery carries: a source that came late
    /// added papers to the day, and deliveries planned with them, after this pass loaded it. (One reload for all senders; no
    /// paper ever leaves a day, so a planned one is found then.)
    /// </summary>
    private Task<Dictionary<long, DayPaper>> ReloadPapersOfDayAsync(DateOnly day, Dictionary<long, DayPaper> stale)
    {
        if (_papersOfDay.TryGetValue(day, out var current) && current.IsValueCreated && current.Value.IsCompletedSuccessfully
            && ReferenceEquals(current.Value.Result, stale))
        {
            _papersOfDay.TryUpdate(day, new(() => LoadPapersAsync(day)), current);
        }
        return PapersOfDayAsync(day);
    }

    private async Task<Dictionary<long, DayPaper>> LoadPapersAsync(DateOnly day) =>
        (await papers.PapersOfDayAsync(day, CancellationToken.None)).ToDictionary(paper => paper.Id);
}
