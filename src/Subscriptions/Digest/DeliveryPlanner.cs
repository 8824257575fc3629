using System.Globalization;
using Dapper;
using Microsoft.Extensions.Options;
using Npgsql;
using Subscriptions.Database;
using Subscriptions.Matching;

namespace Subscriptions.Digest;

/// <summary>What planning one slot did: the subscribers it covered, those with something new to send, the deliveries added.</summary>
internal sealed record SlotPlan(DateTimeOffset Slot, DateOnly PapersDay, long Covered, long Matched, long Added, IReadOnlyList<DateOnly> DeliveryDays);

/// <summary>
/// Turns a slot's matches into <c>deliveries</c>: the slot's subscribers (<see cref="DeliverySlots"/>) are matched
/// against the latest ingested day (a week of days for weekly subscribers), leaving out every paper each of
/// them was already planned, and get one row each, keyed by their local date. The unique (subscriber, day) key
/// makes planning a slot twice add nothing, and gives nobody two digests on one local date.
/// </summary>
internal sealed class DeliveryPlanner(NpgsqlDataSource dataSource, TopicMatcher matcher, IOptions<DigestOptions> options, TimeProvider time)
{
    private const int BatchSize = 5000;
    private const int WeekDays = 7;

    /// <summary>A daily subscriber's candidates: the one latest day ingested (earlier days were theirs the day before).</summary>
    private const string Daily = "daily";

    private sealed record SlotSubscriber(long Id, DateOnly Day, string Frequency);

    /// <summary>A delivery to insert: its papers as JSON, and their ids as a PostgreSQL array literal (for <c>delivery_papers</c>).</summary>
    private sealed record PlannedDelivery(long SubscriberId, DateOnly Day, string Papers, string PaperIds);

    /// <summary>Plans the slot at <paramref name="slot"/> (a whole UTC hour) with the papers of <paramref name="papersDay"/> (default: the latest ingested on or before the slot's date in <c>Digest:TimeZone</c>).</summary>
    public async Task<SlotPlan> PlanSlotAsync(DateTimeOffset slot, DateOnly? papersDay, CancellationToken cancellationToken)
    {
        slot = DeliverySlots.SlotOf(slot);
        var digest = options.Value;
        await using var connection = await dataSource.OpenConnectionAsync(cancellationToken);
        await KeyedLookups.DisableJitAsync(connection, cancellationToken);
        var day = papersDay ?? await LatestPapersDayAsync(connection, DigestSchedule.LocalDate(digest, slot), cancellationToken);
        if (day is not { } latest)
        {
            await RecordSlotAsync(connection, slot, 0, 0, cancellationToken);
            return new SlotPlan(slot, default, 0, 0, 0, []);
        }

        var subscribers = await SubscribersDueAsync(connection, slot, digest, cancellationToken);
        var weekDays = await IngestedDaysAsync(connection, latest.AddDays(1 - WeekDays), latest, cancellationToken);
        var alreadySent = await AlreadyPlannedAsync(connection, subscribers, weekDays, cancellationToken);
        // Which day a planned paper is shown from: the latest of the window it was listed on.
        var paperDays = await PaperDaysAsync(connection, weekDays, cancellationToken);

        long matched = 0, added = 0;
        var localDay = subscribers.ToDictionary(s => s.Id, s => s.Day);
        // One batch is written on this connection while the next is matched on the matcher's. At most one insert is in
        // flight, each its own statement as before, so a crash leaves whole batches, and planning again adds the rest.
        var inserting = Task.FromResult(0);
        try
        {
            foreach (var (frequency, days) in new[] { (Daily, (IReadOnlyList<DateOnly>)[latest]), ("weekly", weekDays) })
            {
                var ids = subscribers.Where(s => s.Frequency == frequency).Select(s => s.Id).ToArray();
                if (ids.Length == 0)
                {
                    continue;
                }
                var batch = new List<PlannedDelivery>(BatchSize);
                await foreach (var list in matcher.MatchAllAsync(days, ids, alreadySent, cancellationToken))
                {
                    matched++;
                    batch.Add(new PlannedDelivery(list.SubscriberId, localDay[list.SubscriberId],
                        PlannedPaper.Serialize(list.Papers, paper => paperDays.GetValueOrDefault(paper.PaperId, latest)),
                        $"{{{string.Join(',', list.Papers.Select(paper => paper.PaperId.ToString(CultureInfo.InvariantCulture)))}}}"));
                    if (batch.Count == BatchSize)
                    {
                        added += await inserting;
                        inserting = InsertAsync(connection, batch, cancellationToken);
                        batch = new List<PlannedDelivery>(BatchSize);
                    }
                }
                added += await inserting;
                inserting = InsertAsync(connection, batch, cancellationToken);
            }
            added += await inserting;
        }
        catch (Exception) when (!inserting.IsCompleted)
        {
            // The connection is closed on the way out: not while the insert is still using it.
            await Task.WhenAny(inserting);
            throw;
        }
        await RecordSlotAsync(connection, slot, matched, added, cancellationToken);
        return new SlotPlan(slot, latest, subscribers.Count, matched, added, [.. localDay.Values.Distinct().Order()]);
    }

    /// <summary>The last slot planned, if any (by any instance, the scheduler or <c>digest</c>).</summary>
    public async Task<DateTimeOffset?> LastPlannedSlotAsync(CancellationToken cancellationToken)
    {
        await using var connection = await dataSource.OpenConnectionAsync(cancellationToken);
        var last = await connection.ExecuteScalarAsync<DateTime?>(new CommandDefinition("SELECT max(slot) FROM digest_slots", cancellationToken: cancellationToken));
        return last is { } value ? new DateTimeOffset(DateTime.SpecifyKind(value, DateTimeKind.Utc)) : null;
    }

    private static async Task<DateOnly?> LatestPapersDayAsync(NpgsqlConnection connection, DateOnly onOrBefore, CancellationToken cancellationToken) =>
        await connection.ExecuteScalarAsync<DateOnly?>(new CommandDefinition(
            "SELECT max(day) FROM paper_days WHERE day <= @onOrBefore", new { onOrBefore }, cancellationToken: cancellationToken));

    private static async Task<IReadOnlyList<DateOnly>> IngestedDaysAsync(NpgsqlConnection connection, DateOnly from, DateOnly to, CancellationToken cancellationToken) =>
        [.. await connection.QueryAsync<DateOnly>(new CommandDefinition(
            "SELECT DISTINCT day FROM paper_days WHERE day BETWEEN @from AND @to ORDER BY day", new { from, to }, cancellationToken: cancellationToken))];

    private static async Task<Dictionary<long, DateOnly>> PaperDaysAsync(NpgsqlConnection connection, IReadOnlyList<DateOnly> days, CancellationToken cancellationToken) =>
        (await connection.QueryAsync<(long PaperId, DateOnly Day)>(new CommandDefinition(
            "SELECT paper_id, max(day) FROM paper_days WHERE day = ANY(@days) GROUP BY paper_id", new { days = days.ToArray() },
            cancellationToken: cancellationToken))).ToDictionary(row => row.PaperId, row => row.Day);

    /// <summary>
    /// The active subscribers whose delivery time falls in the slot, each with their local date there. Their time
    /// zones are few: the due hours are worked out here per zone (DST rules and all), and the database only joins.
    /// </summary>
    private static async Task<List<SlotSubscriber>> SubscribersDueAsync(
        NpgsqlConnection connection, DateTimeOffset slot, DigestOptions digest, CancellationToken cancellationToken)
    {
        // DISTINCT would read every active subscriber; this skips through the index, one probe per zone.
        const string chosenZones = """
            WITH RECURSIVE zones AS (
                (SELECT time_zone FROM subscribers WHERE status = 'active' AND time_zone IS NOT NULL ORDER BY time_zone LIMIT 1)
                UNION ALL
                SELECT (SELECT s.time_zone FROM subscribers s
                        WHERE s.status = 'active' AND s.time_zone IS NOT NULL AND s.time_zone > z.time_zone
                        ORDER BY s.time_zone LIMIT 1)
                FROM zones z WHERE z.time_zone IS NOT NULL)
            SELECT time_zone FROM zones WHERE time_zone IS NOT NULL
            """;
        var zones = (await connection.QueryAsync<string>(new CommandDefinition(chosenZones, cancellationToken: cancellationToken))).ToHashSet(StringComparer.Ordinal);
        zones.Add(digest.TimeZone);
        var due = DeliverySlots.DueIn(slot, zones).ToList();
        if (due.Count == 0)
        {
            return [];
        }

        // Through the index subscribers_delivery_time (sql/0014): each due hour as the columns hold it, and also as
        // NULL ('' and -1 there) where it is the operator's default zone or hour.
        var keys = due.SelectMany(d => AsStored(d, digest)).ToList();
        const string sql = """
            SELECT s.id, z.day, s.frequency
            FROM unnest(@zones::text[], @hours::int[], @days::date[], @weekdays::int[]) AS z(zone, hour, day, weekday)
            JOIN subscribers s ON coalesce(s.time_zone, '') = z.zone AND coalesce(s.delivery_hour, -1) = z.hour
            WHERE s.status = 'active' AND (s.frequency = 'daily' OR s.weekday = z.weekday)
            """;
        return [.. await connection.QueryAsync<SlotSubscriber>(new CommandDefinition(sql, new
        {
            zones = keys.Select(k => k.TimeZone).ToArray(),
            hours = keys.Select(k => k.Hour).ToArray(),
            days = keys.Select(k => k.Day).ToArray(),
            weekdays = keys.Select(k => k.Weekday).ToArray(),
        }, cancellationToken: cancellationToken))];
    }

    private static IEnumerable<DueHour> AsStored(DueHour due, DigestOptions digest)
    {
        const string defaultZone = "";
        const int defaultHour = -1;
        var isDefaultZone = due.TimeZone == digest.TimeZone;
        var isDefaultHour = due.Hour == digest.DefaultHour;
        yield return due;
        if (isDefaultZone)
        {
            yield return due with { TimeZone = defaultZone };
        }
        if (isDefaultHour)
        {
            yield return due with { Hour = defaultHour };
        }
        if (isDefaultZone && isDefaultHour)
        {
            yield return due with { TimeZone = defaultZone, Hour = defaultHour };
        }
    }

    /// <summary>
    /// Of the window's papers, those each slot subscriber was planned on another date. A paper can have been planned
    /// only from a day it was listed on, so only deliveries (their papers in <c>delivery_papers</c>) from the first such day on are read (a day earlier, as a
    /// subscriber's local date can be behind the papers' day). The delivery of the slot's own date does not count, so
    /// planning a slot again matches what it did the first time (and adds nothing).
    /// </summary>
    private static async Task<Dictionary<long, HashSet<long>>> AlreadyPlannedAsync(
        NpgsqlConnection connection, List<SlotSubscriber> subscribers, IReadOnlyList<DateOnly> days, CancellationToken cancellationToken)
    {
        var sent = new Dictionary<long, HashSet<long>>();
        if (subscribers.Count == 0 || days.Count == 0)
        {
            return sent;
        }
        const string sql = """
            WITH window_papers AS (
                SELECT DISTINCT paper_id FROM paper_days WHERE day = ANY(@days)
            ), since AS (
                SELECT min(d.day) - 1 AS day FROM paper_days d JOIN window_papers w ON w.paper_id = d.paper_id
            )
            SELECT d.subscriber_id, p.paper_id
            FROM unnest(@ids::bigint[], @localDays::date[]) AS slot(id, day)
            -- One lookup by key per subscriber (OFFSET 0: not flattened into a scan of every delivery's papers).
            CROSS JOIN LATERAL (SELECT subscriber_id, paper_ids FROM delivery_papers
                                WHERE subscriber_id = slot.id AND day >= (SELECT day FROM since) AND day <> slot.day OFFSET 0) AS d
            CROSS JOIN LATERAL unnest(d.paper_ids) AS p(paper_id)
            WHERE p.paper_id IN (SELECT paper_id FROM window_papers)
            """;
        var rows = await connection.QueryAsync<(long SubscriberId, long PaperId)>(new CommandDefinition(
            sql, new { ids = subscribers.Select(s => s.Id).ToArray(), localDays = subscribers.Select(s => s.Day).ToArray(), days = days.ToArray() },
            cancellationToken: cancellationToken));
        foreach (var (subscriberId, paperId) in rows)
        {
            if (!sent.TryGetValue(subscriberId, out var papers))
            {
                sent[subscriberId] = papers = [];
            }
            papers.Add(paperId);
        }
        return sent;
    }

    private async Task<int> InsertAsync(NpgsqlConnection connection, List<PlannedDelivery> batch, CancellationToken cancellationToken)
    {
        if (batch.Count == 0)
        {
            return 0;
        }
        // The paper ids come as their own column rather than read back out of the inserted jsonb: returning the wide
        // papers from the insert, only to parse them again, spilled each batch to a temporary file (~4 MB per 5,000).
        const string sql = """
            WITH planned AS (
                INSERT INTO deliveries (subscriber_id, day, papers, next_attempt_at, created_at)
                SELECT id, day, papers::jsonb, @now, @now FROM unnest(@ids, @days, @papers) AS t(id, day, papers)
                ON CONFLICT (subscriber_id, day) DO NOTHING
                RETURNING id, subscriber_id, day
            ), queued AS (
                INSERT INTO delivery_queue (delivery_id, day) SELECT id, day FROM planned
            )
            INSERT INTO delivery_papers (subscriber_id, day, paper_ids)
            SELECT planned.subscriber_id, planned.day, t.paper_ids::bigint[]
            FROM planned JOIN unnest(@ids, @days, @paperIds) AS t(id, day, paper_ids) ON t.id = planned.subscriber_id AND t.day = planned.day
            """;
        return await connection.ExecuteAsync(new CommandDefinition(sql, new
        {
            now = time.GetUtcNow(),
            ids = batch.Select(row => row.SubscriberId).ToArray(),
            days = batch.Select(row => row.Day).ToArray(),
            papers = batch.Select(row => row.Papers).ToArray(),
            paperIds = batch.Select(row => row.PaperIds).ToArray(),
        }, cancellationToken: cancellationToken));
    }

    private async Task RecordSlotAsync(NpgsqlConnection connection, DateTimeOffset slot, long matched, long added, CancellationToken cancellationToken)
    {
        const string sql = """
            INSERT INTO digest_slots (slot, planned_at, matched, planned) VALUES (@slot, @now, @matched, @added)
            ON CONFLICT (slot) DO UPDATE SET planned_at = EXCLUDED.planned_at, matched = EXCLUDED.matched,
                                             planned = digest_slots.planned + EXCLUDED.planned
            """;
        await connection.ExecuteAsync(new CommandDefinition(sql, new { slot, now = time.GetUtcNow(), matched, added }, cancellationToken: cancellationToken));
    }
}
