using System.ComponentModel.DataAnnotations;
using Dapper;
using Microsoft.Extensions.DependencyInjection.Extensions;
using Microsoft.Extensions.Options;
using Npgsql;
using Subscriptions.Infrastructure;
using Subscriptions.Subscribers;

namespace Subscriptions.Database;

/// <summary>How long what the service no longer needs is kept. Zero keeps it for good.</summary>
internal sealed class RetentionOptions : IValidatableObject
{
    public const string Section = "Retention";

    /// <summary>
    /// A delivery that was sent, failed or skipped, and the record of the papers it carried, is deleted this long after it
    /// was planned. A paper reaches a subscriber at most once within this time.
    /// </summary>
    public TimeSpan Deliveries { get; set; } = TimeSpan.FromDays(365);

    /// <summary>
    /// A signup never confirmed is erased this long after its confirmation link stopped working. A former subscriber whose
    /// address was signed up again and not confirmed is not one: their earlier subscription's data stays theirs.
    /// </summary>
    public TimeSpan UnconfirmedSignups { get; set; } = TimeSpan.FromDays(30);

    /// <summary>
    /// A bounce or complaint record (what the subscriber's data export and the console list) is deleted this long after it
    /// was received. A suppression it led to stays until an operator lifts it.
    /// </summary>
    public TimeSpan BounceRecords { get; set; } = TimeSpan.FromDays(365);

    /// <summary>How often an instance looks for what to delete.</summary>
    [Range(typeof(TimeSpan), "00:00:00.010", "1.00:00:00", ErrorMessage = "must be between {1} and {2}")]
    public TimeSpan Interval { get; set; } = TimeSpan.FromHours(1);

    // A week's slot reads the deliveries of the days its papers were listed on, to send no paper twice: a month of them at least.
    public static readonly TimeSpan ShortestDeliveries = TimeSpan.FromDays(30);

    // The soft bounces that suppress an address are counted over Bounces:SoftBounceWindow, a year at most.
    public static readonly TimeSpan ShortestBounceRecords = TimeSpan.FromDays(365);

    private static readonly TimeSpan Longest = TimeSpan.FromDays(36_500);

    public IEnumerable<ValidationResult> Validate(ValidationContext validationContext)
    {
        if (Deliveries != TimeSpan.Zero && Deliveries < ShortestDeliveries)
        {
            yield return new ValidationResult(
                $"must be 0 (kept for good) or at least {ShortestDeliveries.TotalDays:N0} days: planning reads the past deliveries of a slot's papers, so that none is sent twice",
                [nameof(Deliveries)]);
        }
        if (Deliveries > Longest)
        {
            yield return new ValidationResult($"must be at most {Longest.TotalDays:N0} days; 0 keeps them for good", [nameof(Deliveries)]);
        }
        if (BounceRecords != TimeSpan.Zero && (BounceRecords < ShortestBounceRecords || BounceRecords > Longest))
        {
            yield return new ValidationResult(
                $"must be 0 (kept for good) or between {ShortestBounceRecords.TotalDays:N0} and {Longest.TotalDays:N0} days: the soft bounces " +
                "that suppress an address are counted over Bounces:SoftBounceWindow, which can be a year", [nameof(BounceRecords)]);
        }
        if (UnconfirmedSignups < TimeSpan.Zero || UnconfirmedSignups > Longest)
        {
            yield return new ValidationResult($"must be 0 (kept for good) or a positive time of at most {Longest.TotalDays:N0} days, e.g. 30.00:00:00", [nameof(UnconfirmedSignups)]);
        }
    }
}

/// <summary>
/// What a round deleted; <see cref="More"/> when it stopped at its limit with more due; <see cref="Skipped"/> when another
/// instance was doing the round.
/// </summary>
internal sealed record RetentionRound(long Deliveries, long UnconfirmedSignups, long BounceRecords, bool More, bool Skipped = false);

/// <summary>
/// Deletes what is older than <see cref="RetentionOptions"/> keeps: finished deliveries (with their papers' record, by
/// sql/0015's trigger), bounce and complaint records, and signups never confirmed (erased as their owner could have: <see cref="SubscriberData.EraseUnconfirmedAsync"/>).
/// Without it, a year of daily digests is 365 delivery rows a subscriber, and addresses typed into the signup form by
/// anyone stay for good without their owner's consent.
/// </summary>
internal sealed class Retention(NpgsqlDataSource dataSource, SubscriberData data, IOptions<RetentionOptions> options, TimeProvider time, ILogger<Retention> logger)
{
    private const long LockKey = 0x5375_6273_5265_746E; // "SubsRetn"
    private const int DeliveriesPerBatch = 5_000;
    private const int BounceRecordsPerBatch = 5_000;
    private const int SignupsPerBatch = 500;
    // At most this many batches a round: a backlog of years (the first round after an upgrade) is worked off in rounds
    // one after another, each logged, rather than in one that says nothing for an hour.
    private const int BatchesPerRound = 100;
    // The sweep of unfollowed topic vectors reads every stored vector (1.5 KB each); what it finds is left by rare races.
    private static readonly TimeSpan TopicVectorSweepInterval = TimeSpan.FromDays(1);

    private DateTimeOffset _lastTopicVectorSweep = DateTimeOffset.MinValue;

    /// <summary>Deletes what is due; returns at once, having done nothing, while another instance is doing it.</summary>
    public async Task<RetentionRound> DeleteDueAsync(CancellationToken cancellationToken)
    {
        // One instance at a time; the deletes run in transactions of their own.
        await using var deleting = await RoundLock.TryTakeAsync(dataSource, LockKey, cancellationToken);
        if (deleting is null)
        {
            return new RetentionRound(0, 0, 0, More: false, Skipped: true);
        }
        var settings = options.Value;
        var now = time.GetUtcNow();
        var (deliveries, moreDeliveries) = settings.Deliveries == TimeSpan.Zero ? (0, false) : await DeleteDeliveriesAsync(now - settings.Deliveries, cancellationToken);
        var (signups, moreSignups) = settings.UnconfirmedSignups == TimeSpan.Zero ? (0, false) : await EraseUnconfirmedAsync(now - settings.UnconfirmedSignups, cancellationToken);
        var (bounceRecords, moreBounceRecords) = settings.BounceRecords == TimeSpan.Zero ? (0, false) : await DeleteBounceRecordsAsync(now - settings.BounceRecords, cancellationToken);
        if (settings.UnconfirmedSignups != TimeSpan.Zero && now - _lastTopicVectorSweep >= TopicVectorSweepInterval)
        {
            await DeleteUnfollowedTopicVectorsAsync(cancellationToken);
            _lastTopicVectorSweep = now;
        }
        if (deliveries + signups + bounceRecords > 0)
        {
            logger.LogInformation("Retention: {Deliveries} deliveries planned before {DeliveriesBefore:u} deleted; {Signups} signups never confirmed erased; " +
                "{BounceRecords} bounce and complaint records received before {BounceRecordsBefore:u} deleted",
                deliveries, now - settings.Deliveries, signups, bounceRecords, now - settings.BounceRecords);
        }
        return new RetentionRound(deliveries, signups, bounceRecords, moreDeliveries || moreSignups || moreBounceRecords);
    }

    /// <summary>
    /// Walks the deliveries from the oldest (their ids follow the order they were planned in, so the old ones come first in
    /// the primary key, and no index on the day is needed) and deletes the finished ones planned before
    /// <paramref name="plannedBefore"/>; stops at the first batch that reaches a newer one.
    /// </summary>
    private Task<(long Deleted, bool More)> DeleteDeliveriesAsync(DateTimeOffset plannedBefore, CancellationToken cancellationToken) =>
        DeleteOldestAsync("""
            WITH batch AS (
                SELECT id, status, created_at FROM deliveries WHERE id > @after ORDER BY id LIMIT @batchSize
            ), deleted AS (
                DELETE FROM deliveries d USING batch b
                WHERE d.id = b.id AND b.created_at < @before AND b.status IN ('sent', 'failed', 'skipped')
                RETURNING d.id
            )
            SELECT (SELECT count(*) FROM deleted) AS deleted, (SELECT max(id) FROM batch) AS last,
                   EXISTS (SELECT 1 FROM batch WHERE created_at >= @before) AS reached_newer
            """, plannedBefore, DeliveriesPerBatch, cancellationToken);

    /// <summary>
    /// Bounce and complaint records received before <paramref name="receivedBefore"/>, walked like the deliveries: their ids
    /// follow the order they were received in.
    /// </summary>
    private Task<(long Deleted, bool More)> DeleteBounceRecordsAsync(DateTimeOffset receivedBefore, CancellationToken cancellationToken) =>
        DeleteOldestAsync("""
            WITH batch AS (
                SELECT id, received_at FROM bounce_events WHERE id > @after ORDER BY id LIMIT @batchSize
            ), deleted AS (
                DELETE FROM bounce_events e USING batch b WHERE e.id = b.id AND b.received_at < @before
                RETURNING e.id
            )
            SELECT (SELECT count(*) FROM deleted) AS deleted, (SELECT max(id) FROM batch) AS last,
                   EXISTS (SELECT 1 FROM batch WHERE received_at >= @before) AS reached_newer
            """, receivedBefore, BounceRecordsPerBatch, cancellationToken);

    /// <summary>
    /// Runs <paramref name="sql"/> batch after batch through a table's primary key from the oldest row (<c>@after</c>, up to
    /// <c>@batchSize</c> rows), until a batch reaches a row from <paramref name="before"/> on or the round's limit.
    /// </summary>
    private async Task<(long Deleted, bool More)> DeleteOldestAsync(string sql, DateTimeOffset before, int batchSize, CancellationToken cancellationToken)
    {
        await using var connection = await dataSource.OpenConnectionAsync(cancellationToken);
        long deleted = 0, after = 0;
        for (var batch = 0; batch < BatchesPerRound; batch++)
        {
            var (deletedNow, last, reachedNewer) = await connection.QuerySingleAsync<(long, long?, bool)>(new CommandDefinition(sql,
                new { after, batchSize, before }, cancellationToken: cancellationToken));
            deleted += deletedNow;
            if (last is not { } lastId || reachedNewer)
            {
                return (deleted, false);
            }
            after = lastId;
        }
        return (deleted, true);
    }

    /// <summary>
    /// The stored meaning of topic texts no subscriber follows. An erasure deletes its subscriber's, but one racing a
    /// preferences save or another erasure, or a signup's vector stored before its topics, can leave one behind. A vector
    /// deleted just before its signup's topics are written is made again by the next slot's planning.
    /// </summary>
    private async Task DeleteUnfollowedTopicVectorsAsync(CancellationToken cancellationToken)
    {
        await using var connection = await dataSource.OpenConnectionAsync(cancellationToken);
        await connection.ExecuteAsync(new CommandDefinition(
            "DELETE FROM topic_embeddings e WHERE NOT EXISTS (SELECT 1 FROM topics t WHERE t.text = e.topic)", cancellationToken: cancellationToken));
    }

    private async Task<(long Erased, bool More)> EraseUnconfirmedAsync(DateTimeOffset expiredBefore, CancellationToken cancellationToken)
    {
        long erased = 0;
        for (var batch = 0; batch < BatchesPerRound; batch++)
        {
            IReadOnlyList<long> due;
            await using (var connection = await dataSource.OpenConnectionAsync(cancellationToken))
            {
                due = [.. await connection.QueryAsync<long>(new CommandDefinition(
                    $"SELECT id FROM subscribers WHERE {SubscriberData.NeverConfirmedSince} ORDER BY id LIMIT @batchSize",
                    new { unconfirmedSince = expiredBefore, batchSize = SignupsPerBatch }, cancellationToken: cancellationToken))];
            }
            foreach (var id in due)
            {
                if (await data.EraseUnconfirmedAsync(id, expiredBefore, cancellationToken))
                {
                    erased++;
                }
            }
            if (due.Count < SignupsPerBatch)
            {
                return (erased, false);
            }
        }
        return (erased, true);
    }
}

internal sealed class RetentionSignal : WakeSignal;

/// <summary>On every instance (one at a time does the work): deletes what is due once an interval, and round after round while more is.</summary>
internal sealed class RetentionWorker(Retention retention, RetentionSignal signal, IOptions<RetentionOptions> options, ILogger<RetentionWorker> logger)
    : PollingWorker(signal, logger)
{
    protected override TimeSpan PollInterval => options.Value.Interval;

    protected override async Task<bool> WorkAsync(CancellationToken stoppingToken)
    {
        var round = await retention.DeleteDueAsync(stoppingToken);
        if (round.More)
        {
            signal.Wake();
        }
        return !round.Skipped;
    }
}

internal static class RetentionExtensions
{
    /// <summary>The <c>Retention</c> settings alone: the <c>digest</c> verb reads them too.</summary>
    public static IServiceCollection AddRetentionOptions(this IServiceCollection services) => services.AddFeature("retention-options", services =>
        services.AddSection<RetentionOptions>(RetentionOptions.Section));

    public static IServiceCollection AddRetention(this IServiceCollection services) => services.AddFeature("retention", services =>
    {
        services.AddDatabase().AddRetentionOptions();
        services.TryAddSingleton<SubscriberData>();
        services.TryAddSingleton(TimeProvider.System);
        services.AddSingleton<Retention>();
        services.AddSingleton<RetentionSignal>();
        services.AddHostedService<RetentionWorker>();
    });
}
