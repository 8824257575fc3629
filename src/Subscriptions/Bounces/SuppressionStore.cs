using Dapper;
using Microsoft.Extensions.Options;
using Npgsql;
using Subscriptions.Email;
using Subscriptions.Subscribers;

namespace Subscriptions.Bounces;

internal sealed record Suppression(string Email, string Reason, string? Detail, DateTime CreatedAt);

/// <summary>
/// What recording a batch of events did: the addresses suppressed by it (not those suppressed before), the events that named no one, and those left
/// out because their report had been recorded before.
/// </summary>
internal sealed record BounceOutcome(IReadOnlyList<string> Suppressed, int Unmatched, int RecordedBefore);

/// <summary>
/// Bounces, complaints and the suppression list. Every address is kept by its key, as subscribers are
/// (<c>email_key</c>, <see cref="EmailAddresses.Key"/>); the places that send or plan email check this
/// table in the same query that picks whom to send to.
/// </summary>
internal sealed class SuppressionStore(NpgsqlDataSource dataSource, IOptions<BouncesOptions> options, TimeProvider time, ILogger<SuppressionStore> logger)
{
    /// <summary>How long a webhook notification's id is kept, to recognise the same notification delivered again.</summary>
    private static readonly TimeSpan NotificationsKept = TimeSpan.FromDays(30);

    public const string ImapSource = "imap";
    public const string WebhookSource = "webhook";

    /// <summary>
    /// Records a batch of events and acts on them in one transaction: a hard bounce suppresses the address
    /// and marks its subscriber bounced; <c>Bounces:SoftBounceLimit</c> soft bounces within
    /// <c>Bounces:SoftBounceWindow</c> do the same; a complaint suppresses it and unsubscribes at once. The events of a
    /// mailbox report recorded before (read again because it could not be moved away) are left out.
    /// </summary>
    public async Task<BounceOutcome> RecordAsync(IReadOnlyList<BounceEvent> received, string source, CancellationToken cancellationToken)
    {
        if (received.Count == 0)
        {
            return new BounceOutcome([], 0, 0);
        }
        var now = time.GetUtcNow();
        await using var connection = await dataSource.OpenConnectionAsync(cancellationToken);
        await using var transaction = await connection.BeginTransactionAsync(cancellationToken);
        var events = await FirstRecordedAsync(received, now, connection, transaction, cancellationToken);
        var batch = new
        {
            kinds = events.Select(e => e.Kind.ToString().ToLowerInvariant()).ToArray(),
            statuses = events.Select(e => e.Status).ToArray(),
            deliveryIds = events.Select(e => e.Sent is { Kind: SentEmailKind.Delivery } sent ? sent.Id : (long?)null).ToArray(),
            deliveryDays = events.Select(e => e.Sent?.Day).ToArray(),
            outboxIds = events.Select(e => e.Sent is { Kind: SentEmailKind.Outbox } sent ? sent.Id : (long?)null).ToArray(),
            recipients = events.Select(e => e.Recipient is { } address ? KeyOf(address) : null).ToArray(),
            subscribersOnly = events.Select(e => e.RecipientMustBeSubscriber).ToArray(),
            source,
            now,
        };

        // The subscribers the events may be about stay until this transaction ends: an erasure of one (which first locks
        // its row for update, SubscriberData.EraseAsync) waits, and then moves or deletes what was recorded here about its
        // address. Without this, an erasure committed between the statements below left that address's bounce and
        // suppression in plain text. (One IN over a UNION ALL, which PostgreSQL joins by the keys: three INs joined by OR
        // read the whole table.)
        const string holdSubscribers = """
            SELECT 1 FROM subscribers s
            WHERE s.id IN (SELECT id FROM subscribers WHERE email_key = ANY(@recipients)
                           UNION ALL SELECT subscriber_id FROM deliveries WHERE id = ANY(@deliveryIds)
                           UNION ALL SELECT subscriber_id FROM email_outbox WHERE id = ANY(@outboxIds))
            ORDER BY s.id
            FOR KEY SHARE OF s
            """;
        await connection.ExecuteAsync(new CommandDefinition(holdSubscribers, batch, transaction, cancellationToken: cancellationToken));

        // Whom each event is about: the subscriber the email it names (a delivery, an outbox email) was sent to, else the
        // recipient address it names (only a subscriber's, for the events that say so). One pass for the whole batch.
        const string record = """
            WITH incoming AS (
                SELECT *
                FROM unnest(@kinds::text[], @statuses::text[], @deliveryIds::bigint[], @deliveryDays::date[], @outboxIds::bigint[],
                            @recipients::text[], @subscribersOnly::boolean[])
                     AS e(kind, status, delivery_id, delivery_day, outbox_id, recipient, subscribers_only)
            ), resolved AS (
                SELECT i.kind, i.status,
                       coalesce((SELECT s.email_key FROM deliveries d JOIN subscribers s ON s.id = d.subscriber_id
                                 WHERE d.id = i.delivery_id AND d.day = i.delivery_day),
                                (SELECT s.email_key FROM email_outbox o JOIN subscribers s ON s.id = o.subscriber_id WHERE o.id = i.outbox_id),
                                CASE WHEN NOT i.subscribers_only THEN i.recipient
                                     ELSE (SELECT s.email_key FROM subscribers s WHERE s.email_key = i.recipient) END) AS email
                FROM incoming i
            )
            INSERT INTO bounce_events (email, kind, status, source, received_at)
            SELECT email, kind, status, @source, @now FROM resolved WHERE email IS NOT NULL
            RETURNING id
            """;
        var ids = (await connection.QueryAsync<long>(new CommandDefinition(record, batch, transaction, cancellationToken: cancellationToken))).ToArray();

        // One verdict per address at a time, in the order of the keys so that two batches cannot wait for each other: two
        // soft bounces of one address recorded at once (two webhook calls, or the webhook and the mailbox) each counted
        // without the other, and the address reached the limit with no suppression.
        const string oneVerdictAtATime = """
            SELECT pg_advisory_xact_lock(hashtext('subscriptions.bounce_address'), k.key)
            FROM (SELECT DISTINCT hashtext(email) AS key FROM bounce_events WHERE id = ANY(@ids) ORDER BY key) k
            """;
        await connection.ExecuteAsync(new CommandDefinition(oneVerdictAtATime, new { ids }, transaction, cancellationToken: cancellationToken));

        // The verdict per address: this batch's complaint or hard bounce, or enough soft bounces lately.
        const string act = $"""
            WITH verdicts AS (
                SELECT b.email,
                       CASE WHEN bool_or(b.kind = 'complaint' AND b.id = ANY(@ids)) THEN 'complaint'
                            WHEN bool_or(b.kind = 'hard' AND b.id = ANY(@ids)) THEN 'hard_bounce'
                            ELSE 'soft_bounces' END AS reason,
                       (array_agg(b.status ORDER BY b.id DESC) FILTER (WHERE b.status IS NOT NULL))[1] AS detail
                FROM bounce_events b
                WHERE b.email IN (SELECT email FROM bounce_events WHERE id = ANY(@ids))
                  AND (b.id = ANY(@ids) OR (b.kind = 'soft' AND b.received_at > @windowStart))
                GROUP BY b.email
                HAVING bool_or(b.kind <> 'soft' AND b.id = ANY(@ids)) OR count(*) FILTER (WHERE b.kind = 'soft') >= @softLimit
            ), suppressed AS (
                INSERT INTO suppressions (email, reason, detail, created_at)
                SELECT email, reason, detail, @now FROM verdicts
                ON CONFLICT (email) DO NOTHING
                RETURNING email
            ), unsubscribed AS (
                UPDATE subscribers s
                SET status = 'unsubscribed', unsubscribed_at = @now, updated_at = @now, confirmation_nonce = NULL, {SubscriberStore.ForgetRenewal}
                FROM verdicts v
                WHERE s.email_key = v.email AND v.reason = 'complaint' AND s.status <> 'unsubscribed'
            ), bounced AS (
                UPDATE subscribers s
                SET status = 'bounced', updated_at = @now, confirmation_nonce = NULL, {SubscriberStore.ForgetRenewal}
                FROM verdicts v
                WHERE s.email_key = v.email AND v.reason <> 'complaint' AND s.status IN ('pending', 'active')
            )
            SELECT email FROM suppressed ORDER BY email
            """;
        var settings = options.Value;
        var suppressed = (await connection.QueryAsync<string>(new CommandDefinition(act, new
        {
            ids,
            now,
            windowStart = now - settings.SoftBounceWindow,
            softLimit = settings.SoftBounceLimit,
        }, transaction, cancellationToken: cancellationToken))).ToList();
        await transaction.CommitAsync(cancellationToken);

        var unmatched = events.Count - ids.Length;
        var recordedBefore = received.Count - events.Count;
        // The count, not the addresses: logs outlive an erasure, which keeps a suppressed address only as a hash.
        if (suppressed.Count > 0)
        {
            logger.LogInformation("Suppressed {Count} address(es) after {Source} bounces or complaints (`suppressions list` shows them)", suppressed.Count, source);
        }
        if (unmatched > 0)
        {
            logger.LogWarning("{Count} {Source} bounce(s) or complaint(s) named no recipient and no message of ours", unmatched, source);
        }
        if (recordedBefore > 0)
        {
            logger.LogInformation("{Count} {Source} bounce(s) or complaint(s) were recorded before (their report read again, or their notification delivered again); not counted again", recordedBefore, source);
        }
        return new BounceOutcome(suppressed, unmatched, recordedBefore);
    }

    /// <summary>
    /// The events to record: those whose report (a mailbox message) or webhook notification is recorded now for the first
    /// time, and those that came in neither. Part of the caller's transaction, so a report counts as recorded exactly when
    /// its events are.
    /// </summary>
    private static async Task<IReadOnlyList<BounceEvent>> FirstRecordedAsync(
        IReadOnlyList<BounceEvent> events, DateTimeOffset now, NpgsqlConnection connection, NpgsqlTransaction transaction, CancellationToken cancellationToken)
    {
        var notifications = events.Select(e => e.Notification).OfType<string>().Distinct().ToArray();
        if (notifications.Length > 0)
        {
            const string notified = """
                DELETE FROM webhook_notifications WHERE received_at < @forgetBefore;
                INSERT INTO webhook_notifications (id, received_at) SELECT id, @now FROM unnest(@notifications::text[]) AS n(id)
                ON CONFLICT (id) DO NOTHING
                RETURNING id
                """;
            var firstNotified = (await connection.QueryAsync<string>(new CommandDefinition(notified,
                new { notifications, now, forgetBefore = now - NotificationsKept }, transaction, cancellationToken: cancellationToken))).ToHashSet(StringComparer.Ordinal);
            events = [.. events.Where(e => e.Notification is null || firstNotified.Contains(e.Notification))];
        }
        var reports = events.Select(e => e.Report).OfType<MailboxMessage>().Distinct().ToArray();
        if (reports.Length == 0)
        {
            return events;
        }
        // A reader recording the same report at the same time would wait here for this one, then find it recorded.
        const string sql = """
            INSERT INTO bounce_reports (mailbox, uid_validity, uid, recorded_at)
            SELECT mailbox, uid_validity, uid, @now
            FROM unnest(@mailboxes::text[], @uidValidities::bigint[], @uids::bigint[]) AS r(mailbox, uid_validity, uid)
            ON CONFLICT (mailbox, uid_validity, uid) DO NOTHING
            RETURNING mailbox, uid_validity, uid
            """;
        var firstRecorded = (await connection.QueryAsync<(string Mailbox, long UidValidity, long Uid)>(new CommandDefinition(sql, new
        {
            mailboxes = reports.Select(r => r.Mailbox).ToArray(),
            uidValidities = reports.Select(r => (long)r.UidValidity).ToArray(),
            uids = reports.Select(r => (long)r.Uid).ToArray(),
            now,
        }, transaction, cancellationToken: cancellationToken)))
            .Select(row => new MailboxMessage(row.Mailbox, (uint)row.UidValidity, (uint)row.Uid))
            .ToHashSet();
        return [.. events.Where(e => e.Report is null || firstRecorded.Contains(e.Report))];
    }

    /// <summary>
    /// Forgets the recorded reports of a mailbox folder that are no longer in it (moved away, or deleted by a person):
    /// their UIDs are never given to another message, so they cannot be read again.
    /// </summary>
    public async Task ForgetReportsGoneFromAsync(string mailbox, uint uidValidity, IReadOnlyCollection<uint> uidsInFolder, CancellationToken cancellationToken)
    {
        const string sql = """
            DELETE FROM bounce_reports
            WHERE mailbox = @mailbox AND (uid_validity <> @uidValidity OR uid <> ALL(@uids))
            """;
        await using var connection = await dataSource.OpenConnectionAsync(cancellationToken);
        await connection.ExecuteAsync(new CommandDefinition(sql, new
        {
            mailbox,
            uidValidity = (long)uidValidity,
            uids = uidsInFolder.Select(uid => (long)uid).ToArray(),
        }, cancellationToken: cancellationToken));
    }

    public async Task<IReadOnlyList<Suppression>> ListAsync(CancellationToken cancellationToken)
    {
        const string sql = "SELECT email, reason, detail, created_at FROM suppressions ORDER BY email";
        await using var connection = await dataSource.OpenConnectionAsync(cancellationToken);
        return [.. await connection.QueryAsync<Suppression>(new CommandDefinition(sql, cancellationToken: cancellationToken))];
    }

    /// <summary>Suppresses an address by hand; false when it already was.</summary>
    public async Task<bool> AddAsync(string email, CancellationToken cancellationToken)
    {
        const string sql = """
            INSERT INTO suppressions (email, reason, created_at) VALUES (@email, 'operator', @now)
            ON CONFLICT (email) DO NOTHING
            """;
        await using var connection = await dataSource.OpenConnectionAsync(cancellationToken);
        return await connection.ExecuteAsync(new CommandDefinition(sql, new { email = KeyOf(email), now = time.GetUtcNow() }, cancellationToken: cancellationToken)) == 1;
    }

    /// <summary>
    /// Lifts a suppression; false when there was none. The address's earlier soft bounces are forgotten with
    /// it, so the next one starts a new count instead of suppressing it again at once. A suppression kept under the
    /// hash of the address, its subscriber having erased their data, is lifted too.
    /// </summary>
    public async Task<bool> RemoveAsync(string email, CancellationToken cancellationToken)
    {
        const string sql = """
            WITH lifted AS (DELETE FROM suppressions WHERE email IN (@email, @erasedKey) RETURNING email),
            forgotten AS (DELETE FROM bounce_events WHERE email = @email AND kind = 'soft' AND EXISTS (SELECT 1 FROM lifted))
            SELECT count(*) FROM lifted
            """;
        var key = KeyOf(email);
        await using var connection = await dataSource.OpenConnectionAsync(cancellationToken);
        return await connection.ExecuteScalarAsync<long>(new CommandDefinition(sql, new { email = key, erasedKey = SubscriberData.ErasedKey(key) },
            cancellationToken: cancellationToken)) > 0;
    }

    /// <summary>
    /// The key an address is suppressed and matched by, as a subscriber's is. Reports may name addresses
    /// signup would refuse (a local alias, say); those are only case-folded.
    /// </summary>
    public static string KeyOf(string address) =>
        EmailAddresses.Canonicalize(address).Address is { } canonical ? EmailAddresses.Key(canonical) : address.Trim().ToLowerInvariant();
}
