using System.Security.Cryptography;
using System.Text;
using System.Text.Json;
using System.Text.Json.Serialization;
using Dapper;
using Npgsql;

namespace Subscriptions.Subscribers;

/// <summary>Everything stored about one subscriber, as <c>GET /preferences/export</c> gives it.</summary>
internal sealed record SubscriberExport(
    string Email, string Status, int PermanentFailures, IReadOnlyList<string> Topics, ExportSettings Settings, IReadOnlyList<ExportEvent> History,
    IReadOnlyList<ExportEmail> Emails, IReadOnlyList<ExportDelivery> Deliveries, IReadOnlyList<ExportRating> Ratings, IReadOnlyList<ExportBounce> Bounces,
    ExportSuppression? Suppression, ExportPendingSignup? PendingSignup);

/// <summary>A signup of the address since the subscription ended, not yet confirmed: what it asked for replaces the topics and settings once it is (sql/0026).</summary>
internal sealed record ExportPendingSignup(IReadOnlyList<string> Topics, ExportSettings Settings);

internal sealed record ExportSettings(int? MaxPapers, string? TimeZone, int? DeliveryHour, string Frequency, string? Weekday);

internal sealed record ExportEvent(string Event, DateTime At);

/// <summary>An email of the subscription's lifecycle; <c>LastError</c> is the mail server's last refusal, as the console shows it.</summary>
internal sealed record ExportEmail(string Kind, string Status, int Attempts, DateTime CreatedAt, DateTime? SentAt, string? MessageId, string? LastError);

internal sealed record ExportDelivery(
    DateOnly Day, string Status, int Attempts, DateTime CreatedAt, DateTime? SentAt, string? MessageId, string? LastError, IReadOnlyList<ExportPaper> Papers);

internal sealed record ExportPaper(long Id, string? ArxivId, string Title, string? Url, IReadOnlyList<string> MatchedTopics);

/// <summary>A "more/less like this" the subscriber gave a paper.</summary>
internal sealed record ExportRating(long PaperId, string Title, bool Liked, DateTime At);

internal sealed record ExportBounce(string Kind, string? Status, string Source, DateTime ReceivedAt);

internal sealed record ExportSuppression(string Reason, DateTime Since);

/// <summary>
/// A subscriber's own data: all of it as JSON, or erased. Erasure removes the subscriber, their topics (and the stored
/// meaning of any topic text no one else follows), ratings, deliveries, queued emails and bounce records in one transaction; a suppression (a bounced or complaining address) is kept,
/// as a hash of the address, so that the address stays suppressed if it is ever signed up again.
/// </summary>
internal sealed class SubscriberData(NpgsqlDataSource dataSource)
{
    public static readonly JsonSerializerOptions Json = new(JsonSerializerDefaults.Web)
    {
        WriteIndented = true,
        DefaultIgnoreCondition = JsonIgnoreCondition.Never,
    };

    /// <summary>The key a suppression is kept under once its subscriber erased their data.</summary>
    public static string ErasedKey(string emailKey) => "sha256:" + Convert.ToHexStringLower(SHA256.HashData(Encoding.UTF8.GetBytes(emailKey)));

    public async Task<SubscriberExport?> ExportAsync(long subscriberId, CancellationToken cancellationToken)
    {
        await using var connection = await dataSource.OpenConnectionAsync(cancellationToken);
        // One snapshot: the subscriber's rows as they were at one instant.
        await using var transaction = await connection.BeginTransactionAsync(System.Data.IsolationLevel.RepeatableRead, cancellationToken);
        const string subscriber = """
            SELECT email, email_key, status, permanent_failures, max_papers, time_zone, delivery_hour, frequency, weekday,
                   created_at, confirmed_at, unsubscribed_at, updated_at,
                   renewed_topics, renewed_time_zone, renewed_delivery_hour, renewed_frequency, renewed_weekday
            FROM subscribers WHERE id = @subscriberId
            """;
        var row = await connection.QuerySingleOrDefaultAsync<SubscriberRow>(
            new CommandDefinition(subscriber, new { subscriberId }, transaction, cancellationToken: cancellationToken));
        if (row is null)
        {
            return null;
        }
        var parameters = new { subscriberId, row.EmailKey };
        var topics = await connection.QueryAsync<string>(new CommandDefinition(
            "SELECT text FROM topics WHERE subscriber_id = @subscriberId ORDER BY position", parameters, transaction, cancellationToken: cancellationToken));
        var emails = await connection.QueryAsync<ExportEmail>(new CommandDefinition("""
            SELECT kind, status, attempts, created_at, sent_at, message_id, last_error
            FROM email_outbox WHERE subscriber_id = @subscriberId ORDER BY id
            """, parameters, transaction, cancellationToken: cancellationToken));
        var deliveries = await connection.QueryAsync<DeliveryRow>(new CommandDefinition("""
            SELECT id, day, status, attempts, created_at, sent_at, message_id, last_error, papers::text AS papers
            FROM deliveries WHERE subscriber_id = @subscriberId ORDER BY day, id
            """, parameters, transaction, cancellationToken: cancellationToken));
        var papers = (await connection.QueryAsync<(long Id, string? ArxivId, string Title, string? PageUrl)>(new CommandDefinition("""
            SELECT p.id, p.arxiv_id, p.title, p.page_url FROM papers p
            WHERE p.id IN (SELECT (e.value ->> 'paper_id')::bigint FROM deliveries d, jsonb_array_elements(d.papers) e WHERE d.subscriber_id = @subscriberId)
            """, parameters, transaction, cancellationToken: cancellationToken))).ToDictionary(paper => paper.Id);
        var ratings = await connection.QueryAsync<ExportRating>(new CommandDefinition("""
            SELECT f.paper_id, p.title, f.liked, f.created_at AS at FROM paper_feedback f JOIN papers p ON p.id = f.paper_id
            WHERE f.subscriber_id = @subscriberId ORDER BY f.created_at, f.paper_id
            """, parameters, transaction, cancellationToken: cancellationToken));
        var bounces = await connection.QueryAsync<ExportBounce>(new CommandDefinition("""
            SELECT kind, status, source, received_at FROM bounce_events WHERE email = @EmailKey ORDER BY id
            """, parameters, transaction, cancellationToken: cancellationToken));
        var suppression = await connection.QuerySingleOrDefaultAsync<ExportSuppression>(new CommandDefinition(
            "SELECT reason, created_at AS since FROM suppressions WHERE email = @EmailKey", parameters, transaction, cancellationToken: cancellationToken));
        await transaction.CommitAsync(cancellationToken);

        var history = new List<ExportEvent> { new("signed up", row.CreatedAt) };
        if (row.ConfirmedAt is { } confirmed)
        {
            history.Add(new("confirmed", confirmed));
        }
        if (row.UnsubscribedAt is { } unsubscribed)
        {
            history.Add(new("unsubscribed", unsubscribed));
        }
        history.Add(new($"last changed (now {row.Status})", row.UpdatedAt));

        return new SubscriberExport(
            row.Email, row.Status, row.PermanentFailures, [.. topics],
            Settings(row.MaxPapers, row.TimeZone, row.DeliveryHour, row.Frequency, row.Weekday),
            [.. history.OrderBy(e => e.At)],
            [.. emails],
            [.. deliveries.Select(d => new ExportDelivery(d.Day, d.Status, d.Attempts, d.CreatedAt, d.SentAt, d.MessageId, d.LastError,
                [.. PlannedPapers(d.Papers).Select(p => papers.TryGetValue(p.PaperId, out var paper)
                    ? new ExportPaper(p.PaperId, paper.ArxivId, paper.Title, paper.PageUrl, p.Topics)
                    : new ExportPaper(p.PaperId, null, "", null, p.Topics))]))],
            [.. ratings],
            [.. bounces],
            suppression,
            // Pending: during a rolling upgrade an older instance may have confirmed it without applying or forgetting it.
            row.Status == "pending" && row.RenewedTopics is { } renewedTopics
                ? new ExportPendingSignup(renewedTopics, Settings(
                    row.MaxPapers, row.RenewedTimeZone, row.RenewedDeliveryHour, row.RenewedFrequency ?? DeliveryChoice.Daily, row.RenewedWeekday))
                : null);
    }

    private static ExportSettings Settings(int? maxPapers, string? timeZone, int? deliveryHour, string frequency, int? weekday) =>
        new(maxPapers, timeZone, deliveryHour, frequency, weekday is { } day ? DeliveryChoice.Weekdays[day - 1] : null);

    /// <summary>
    /// Erases the subscriber; false when there was none. Their deliveries go with them (foreign keys and triggers cascade,
    /// sql/0016), also one a sender has claimed at this moment: a sender checks its delivery still exists just before sending
    /// it, so at most the one message already being handed to the mail server can still go out. The erasure waits for that
    /// send's outcome to be recorded (the check's lock, sql/0017) and then deletes it with the rest.
    /// </summary>
    public Task<bool> EraseAsync(long subscriberId, CancellationToken cancellationToken) => EraseAsync(subscriberId, unconfirmedSince: null, cancellationToken);

    /// <summary>
    /// Erases the subscriber as <see cref="EraseAsync(long, CancellationToken)"/> does, if they are still a signup whose
    /// confirmation link expired before <paramref name="expiredBefore"/> (Retention); false otherwise.
    /// </summary>
    public Task<bool> EraseUnconfirmedAsync(long subscriberId, DateTimeOffset expiredBefore, CancellationToken cancellationToken) =>
        EraseAsync(subscriberId, expiredBefore, cancellationToken);

    /// <summary>
    /// A signup never confirmed whose link expired before <c>@unconfirmedSince</c>: still pending, or bounced or unsubscribed
    /// by a bounce or complaint about its confirmation email. A former subscriber signed up again is unconfirmed too, but
    /// keeps a renewed key until the confirmation (sql/0021): their earlier subscription's data is theirs.
    /// </summary>
    public const string NeverConfirmedSince =
        "status <> 'active' AND renewed_subscription_key IS NULL AND confirmed_at IS NULL AND confirmation_expires_at < @unconfirmedSince";

    private async Task<bool> EraseAsync(long subscriberId, DateTimeOffset? unconfirmedSince, CancellationToken cancellationToken)
    {
        await using var connection = await dataSource.OpenConnectionAsync(cancellationToken);
        await using var transaction = await connection.BeginTransactionAsync(cancellationToken);
        // Under the row's lock: a signup confirmed, or made again, meanwhile is no longer unconfirmed.
        const string select = $"""
            SELECT email_key FROM subscribers
            WHERE id = @subscriberId AND (@unconfirmedSince IS NULL OR ({NeverConfirmedSince}))
            FOR UPDATE
            """;
        var emailKey = await connection.QuerySingleOrDefaultAsync<string>(new CommandDefinition(
            select, new { subscriberId, unconfirmedSince }, transaction, cancellationToken: cancellationToken));
        if (emailKey is null)
        {
            return false;
        }
        // The suppression moves to the hash in one statement: a suppression of the address committed between a copy and a
        // delete would have been deleted without being copied.
        const string erase = """
            WITH moved AS (DELETE FROM suppressions WHERE email = @emailKey RETURNING reason, created_at)
            INSERT INTO suppressions (email, reason, detail, created_at)
            SELECT @erasedKey, reason, NULL, created_at FROM moved
            ON CONFLICT (email) DO NOTHING;
            DELETE FROM bounce_events WHERE email = @emailKey;
            DELETE FROM topic_embeddings e
            WHERE e.topic IN (SELECT text FROM topics WHERE subscriber_id = @subscriberId)
              AND NOT EXISTS (SELECT 1 FROM topics o WHERE o.text = e.topic AND o.subscriber_id <> @subscriberId);
            DELETE FROM subscribers WHERE id = @subscriberId;
            """;
        await connection.ExecuteAsync(new CommandDefinition(erase, new { subscriberId, emailKey, erasedKey = ErasedKey(emailKey) }, transaction,
            cancellationToken: cancellationToken));
        await transaction.CommitAsync(cancellationToken);
        return true;
    }

    /// <summary>
    /// Common table expressions that key an erased address's suppression (<c>@erasedKey</c>) by the address again
    /// (<c>@emailKey</c>), for a statement of its own or one that also records the signup.
    /// </summary>
    public const string RestoreSuppressionCtes = """
        erased AS (
            DELETE FROM suppressions WHERE email = @erasedKey RETURNING reason, created_at
        ), restored AS (
            INSERT INTO suppressions (email, reason, detail, created_at)
            SELECT @emailKey, reason, 'suppressed before the address was erased', created_at FROM erased
            ON CONFLICT (email) DO NOTHING
        )
        """;

    /// <summary>Signing up an address that was suppressed and then erased: the suppression is keyed by the address again.</summary>
    public static Task RestoreSuppressionAsync(NpgsqlConnection connection, NpgsqlTransaction transaction, string emailKey, CancellationToken cancellationToken)
    {
        const string sql = $"""
            WITH {RestoreSuppressionCtes}
            SELECT 1
            """;
        return connection.ExecuteAsync(new CommandDefinition(sql, new { emailKey, erasedKey = ErasedKey(emailKey) }, transaction, cancellationToken: cancellationToken));
    }

    private static List<(long PaperId, IReadOnlyList<string> Topics)> PlannedPapers(string json)
    {
        using var document = JsonDocument.Parse(json);
        return [.. document.RootElement.EnumerateArray().Select(paper => (
            paper.GetProperty("paper_id").GetInt64(),
            (IReadOnlyList<string>)[.. paper.GetProperty("topics").EnumerateArray().Select(topic => topic.GetString() ?? "")]))];
    }

    private sealed class SubscriberRow
    {
        public string Email { get; set; } = "";
        public string EmailKey { get; set; } = "";
        public string Status { get; set; } = "";
        public int PermanentFailures { get; set; }
        public int? MaxPapers { get; set; }
        public string? TimeZone { get; set; }
        public int? DeliveryHour { get; set; }
        public string Frequency { get; set; } = "";
        public int? Weekday { get; set; }
        public DateTime CreatedAt { get; set; }
        public DateTime? ConfirmedAt { get; set; }
        public DateTime? UnsubscribedAt { get; set; }
        public DateTime UpdatedAt { get; set; }
        public string[]? RenewedTopics { get; set; }
        public string? RenewedTimeZone { get; set; }
        public int? RenewedDeliveryHour { get; set; }
        public string? RenewedFrequency { get; set; }
        public int? RenewedWeekday { get; set; }
    }

    private sealed class DeliveryRow
    {
        public long Id { get; set; }
        public DateOnly Day { get; set; }
        public string Status { get; set; } = "";
        public int Attempts { get; set; }
        public DateTime CreatedAt { get; set; }
        public DateTime? SentAt { get; set; }
        public string? MessageId { get; set; }
        public string? LastError { get; set; }
        public string Papers { get; set; } = "[]";
    }
}
