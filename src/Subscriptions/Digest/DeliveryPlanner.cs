using System.Globalization;
using Dapper;
using Microsoft.Extensions.Options;
using Npgsql;
using Subscriptions.Database;
using Subscriptions.Matching;

namespace Subscriptions.Digest;

/// <summary>
/// What planning one slot did: the subscribers it covered (active, not suppressed, due), those with something new to send,
/// the deliveries added.
/// </summary>
internal sealed record SlotPlan(DateTimeOffset Slot, DateOnly PapersDay, long Covered, long Matched, long Added, IReadOnlyList<DateOnly> DeliveryDays);

/// <summary>
/// Turns a slot's matches into <c>deliveries</c>: the slot's subscribers (<see cref="DeliverySlots"/>) are matched
/// against the days ingested since their delivery time the local date before (a week of days for weekly subscribers),
/// leaving out every paper each of them was already planned, and get one row each, keyed by their local date. The
/// unique (subscriber, day) key makes planning a slot twice add nothing, and gives nobody two digests on one local date.
/// </summary>
internal sealed class DeliveryPlanner(
    NpgsqlDataSource dataSource, TopicMatcher matcher, IOptions<DigestOptions> options, TimeProvider time, ILogger<DeliveryPlanner> logger)
{
    // Small enough that a slot (~38,000 subscribers of a million) is many batches: the last batch's matching and writing
    // overlap nothing, and at 5,000 that tail made the 24 slots 25.0 s against 21.7 s at 1,000.
    private const int BatchSize = 1000;
    private const int WeekDays = 7;
    // A week's candidates are seven days, but eight when daylight saving moves a weekly subscriber's slot across the default one.
    private const int WindowDays = WeekDays + 1;

    private const string Daily = "daily";

    /// <summary>The start of the key of a weekly subscriber's candidate days; a daily subscriber's are keyed by the days alone.</summary>
    private const string Weekly = "weekly:";

    /// <summary>
    /// A subscriber due in the slot: who they are and what they want, their local date there, how often they get mail, and
    /// the newest day of papers before this date that they are taken to have had.
    /// </summary>
    private sealed record DueSubscriber(SubscriberTopics Subscriber, DateOnly Day, string Frequency, DateOnly PapersThrough);

    /// <summary>
    /// A due hour as the columns hold it (<see cref="AsStored"/>), and the newest day of papers the schedule had ingested by
    /// the same delivery time the local date before, and a week before.
    /// </summary>
    private sealed record StoredDueHour(DueHour Hour, DateOnly PapersThroughTheDayBefore, DateOnly PapersThroughTheWeekBefore);

    /// <summary>A delivery to insert: its papers as JSON, and their ids as a PostgreSQL array literal (for <c>delivery_papers</c>).</summary>
    private sealed record PlannedDelivery(long SubscriberId, DateOnly Day, string Papers, string PaperIds);

    /// <summary>
    /// Plans the slot at <paramref name="slot"/> (a whole UTC hour) with the papers of <paramref name="papersDay"/> (default:
    /// the latest ingested by the slot's schedule: on or before the day of the latest default slot, see
    /// <see cref="DigestSchedule.DayOfFiring"/>); <paramref name="bySchedule"/> when the hourly schedule plans it rather than
    /// an operator.
    /// </summary>
    public async Task<SlotPlan> PlanSlotAsync(DateTimeOffset slot, DateOnly? papersDay, CancellationToken cancellationToken, bool bySchedule = false)
    {
        slot = DeliverySlots.SlotOf(slot);
        var digest = options.Value;
        await using var connection = await dataSource.OpenConnectionAsync(cancellationToken);
        // Papers stored early (an `ingest` before the default time) wait for it: a slot before it that took them would leave
        // the day before's to no one.
        var day = papersDay ?? await LatestPapersDayAsync(connection, DigestSchedule.DayOfFiring(digest, slot), cancellationToken);
        if (day is not { } latest)
        {
            await RecordSlotAsync(connection, slot, 0, 0, bySchedule, cancellationToken);
            return new SlotPlan(slot, default, 0, 0, 0, []);
        }

        var windowDays = await IngestedDaysAsync(connection, latest.AddDays(1 - WindowDays), latest, cancellationToken);
        // A daily subscriber's candidates are the days ingested after those the schedule had ingested by their delivery time
        // the local date before: one day, but two or none when daylight saving (theirs or the operator's) moves their slot
        // across the operator's default one, where each day's papers are ingested (with the latest day alone, autumn's
        // change skipped a day's papers for them). Their last digest of the week before (its papers_through, sql/0028)
        // can add the day before that: one that moved their time from before the default slot to after it, or whose slot
        // came before a late fetch of the day's papers, gets the day between too. `digest --date` plans the default slot of
        // its day: that day is among every due subscriber's candidates there. A weekly subscriber's are the same a week
        // back: seven days, eight or six across a change of daylight saving. Candidates are keyed by their days.
        var candidates = new Dictionary<string, IReadOnlyList<DateOnly>>(StringComparer.Ordinal);
        var keys = new Dictionary<(bool Weekly, DateOnly PapersThrough), string>();
        var dueHours = new List<StoredDueHour>();
        foreach (var due in await DueHoursAsync(connection, slot, digest, cancellationToken))
        {
            var dayBefore = DigestSchedule.DayOfFiring(digest, DeliverySlots.SlotDaysBefore(due, 1));
            var weekBefore = DigestSchedule.DayOfFiring(digest, DeliverySlots.SlotDaysBefore(due, WeekDays));
            dueHours.AddRange(AsStored(due, digest).Select(stored => new StoredDueHour(stored, dayBefore, weekBefore)));
        }
        // Which day a planned paper is shown from: the latest of the window it was listed on.
        var paperDays = await PaperDaysAsync(connection, windowDays, cancellationToken);
        var plannedOn = await PlannableDaysAsync(connection, paperDays.Keys, cancellationToken);

        long covered = 0, matched = 0, added = 0;
        var localDays = new HashSet<DateOnly>();
        var matchers = new Dictionary<string, TopicMatcher.BatchMatcher>(StringComparer.Ordinal); // by candidate days
        var batches = new Dictionary<string, List<DueSubscriber>>(StringComparer.Ordinal);
        // The slot's subscribers are read in one pass on this connection. A full batch is matched on another thread while
        // the next one is read (one batch at a time: the matcher is not shared), and its deliveries are written on two
        // other connections while the next batches are read and matched: writing is most of planning. Each batch is its
        // own statement, so a crash leaves whole batches, and planning again adds the rest.
        await using var firstWriter = await dataSource.OpenConnectionAsync(cancellationToken);
        await using var secondWriter = await dataSource.OpenConnectionAsync(cancellationToken);
        NpgsqlConnection[] writers = [firstWriter, secondWriter];
        Task<int>[] inserting = [Task.FromResult(0), Task.FromResult(0)];
        var planning = Task.CompletedTask;
        var batchesPlanned = 0;
        try
        {
            await foreach (var due in DueSubscribersAsync(connection, dueHours, plannedOn, [.. paperDays.Keys], cancellationToken))
            {
                covered++;
                localDays.Add(due.Day);
                var key = CandidatesKey(due.Frequency != Daily, due.PapersThrough);
                if (candidates[key].Count == 0)
                {
                    continue; // nothing ingested since their last delivery
                }
                if (!batches.TryGetValue(key, out var batch))
                {
                    batches[key] = batch = new List<DueSubscriber>(BatchSize);
                }
                batch.Add(due);
                if (batch.Count == BatchSize)
                {
                    batches.Remove(key);
                    await planning;
                    var days = candidates[key];
                    planning = Task.Run(() => PlanBatchAsync(key, days, batch), cancellationToken);
                }
            }
            await planning;
            foreach (var (key, batch) in batches.OrderBy(pair => pair.Key.StartsWith(Weekly, StringComparison.Ordinal)))
            {
                await PlanBatchAsync(key, candidates[key], batch);
            }
            added += (await Task.WhenAll(inserting)).Sum();
        }
        catch (Exception) when (!planning.IsCompleted || inserting.Any(insert => !insert.IsCompleted))
        {
            // The connections are closed on the way out: not while a batch is still being planned or written on one.
            await Task.WhenAny(planning);
            await Task.WhenAll(inserting.Select(insert => Task.WhenAny(insert)));
            throw;
        }
        await AnalyzeQueueAsync(connection, added, cancellationToken);
        await RecordSlotAsync(connection, slot, matched, added, bySchedule, cancellationToken);
        return new SlotPlan(slot, latest, covered, matched, added, [.. localDays.Order()]);

        string CandidatesKey(bool weekly, DateOnly papersThrough)
        {
            if (!keys.TryGetValue((weekly, papersThrough), out var key))
            {
                IReadOnlyList<DateOnly> days = [.. windowDays.Where(candidate => candidate > papersThrough)];
                keys[(weekly, papersThrough)] = key = (weekly ? Weekly : "") + string.Join(',', days.Select(candidate => candidate.DayNumber));
                candidates.TryAdd(key, days);
            }
            return key;
        }

        // On another thread than the reading: what it needs of the candidates comes as arguments.
        async Task PlanBatchAsync(string key, IReadOnlyList<DateOnly> days, List<DueSubscriber> batch)
        {
            if (batch.Count == 0)
            {
                return;
            }
            // The query reads subscribers in the index's order; deliveries are numbered, and so sent, in subscriber order
            // (within a batch, and daily ones first: for a slot smaller than a batch, as they were when the query sorted).
            batch.Sort(static (x, y) => x.Subscriber.Id.CompareTo(y.Subscriber.Id));
            if (!matchers.TryGetValue(key, out var matcherOfDays))
            {
                matchers[key] = matcherOfDays = await matcher.ForDaysAsync(days, cancellationToken);
            }
            var localDay = batch.ToDictionary(due => due.Subscriber.Id, due => due.Day);
            var lists = await matcherOfDays.MatchAsync([.. batch.Select(due => due.Subscriber)], cancellationToken);
            matched += lists.Count;
            var planned = lists.Select(list => new PlannedDelivery(list.SubscriberId, localDay[list.SubscriberId],
                PlannedPaper.Serialize(list.Papers, paper => paperDays.GetValueOrDefault(paper.PaperId, latest)),
                $"{{{string.Join(',', list.Papers.Select(paper => paper.PaperId.ToString(CultureInfo.InvariantCulture)))}}}")).ToList();
            var writer = batchesPlanned++ % writers.Length;
            added += await inserting[writer];
            // The newest day matched, which is not the slot's when it was asked for (`digest --date`) and is not ingested.
            inserting[writer] = InsertAsync(writers[writer], planned, days[^1], cancellationToken);
        }
    }

    /// <summary>
    /// The latest slot the hourly schedule planned (on any instance) at or before <paramref name="current"/>. One an operator
    /// planned (<c>digest</c>, <c>digest --at</c>, the console) says nothing of the hours before it, which the schedule may
    /// have missed while every instance was down; nor does a later one.
    /// </summary>
    public async Task<DateTimeOffset?> LastScheduledSlotAsync(DateTimeOffset current, CancellationToken cancellationToken)
    {
        await using var connection = await dataSource.OpenConnectionAsync(cancellationToken);
        var last = await connection.ExecuteScalarAsync<DateTime?>(new CommandDefinition(
            "SELECT max(slot) FROM digest_slots WHERE by_schedule AND slot <= @current", new { current }, cancellationToken: cancellationToken));
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
    /// The hours due in the slot, in every time zone subscribers chose. Time zones are few: the due hours are worked out here
    /// per zone (DST rules and all), and the database only joins.
    /// </summary>
    private async Task<List<DueHour>> DueHoursAsync(
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
        // Checked at signup, but by the instance that took it: one whose time zone database is older (or missing, in an image
        // without tzdata) has no slot for the zone, and its subscribers would get nothing, silently.
        if (zones.Where(zone => !TimeZoneInfo.TryFindSystemTimeZoneById(zone, out _)).Order(StringComparer.Ordinal).ToList() is { Count: > 0 } unknown)
        {
            logger.LogError("Slot {Slot:O}: subscribers in time zones this machine does not know ({Zones}) are not planned; install or update " +
                "the time zone database (Debian's tzdata) on every instance", slot, string.Join(", ", unknown));
        }
        return [.. DeliverySlots.DueIn(slot, zones)];
    }

    /// <summary>
    /// The active, unsuppressed subscribers whose delivery time is one of <paramref name="dueHours"/> (through the index
    /// subscribers_delivery_time, sql/0014), each with their local date, their topics, the papers of the window they were
    /// already planned on another date, and the newest day of papers they are taken to have had (see <see cref="PlanSlotAsync"/>).
    /// A paper can have been planned only in the days after one it was listed on, so only deliveries (their papers in
    /// <c>delivery_papers</c>) of <paramref name="plannedOn"/> are read. The delivery of the slot's own
    /// date does not count, so planning a slot again matches what it did the first time (and adds nothing). One pass,
    /// streamed: what each subscriber needs comes with them, four lookups by key, not a query per kind of thing.
    /// </summary>
    private async IAsyncEnumerable<DueSubscriber> DueSubscribersAsync(
        NpgsqlConnection connection, List<StoredDueHour> dueHours, DayRanges plannedOn, long[] windowPapers,
        [System.Runtime.CompilerServices.EnumeratorCancellation] CancellationToken cancellationToken)
    {
        if (dueHours.Count == 0)
        {
            yield break;
        }
        const string sql = """
            SELECT s.id, s.email, coalesce(s.max_papers, @defaultMaxPapers), z.day, s.frequency, z.n,
                   (SELECT max(d.papers_through) FROM delivery_papers d WHERE d.subscriber_id = s.id AND d.day BETWEEN z.day - 7 AND z.day - 1),
                   ARRAY(SELECT t.text FROM topics t WHERE t.subscriber_id = s.id ORDER BY t.position),
                   ARRAY(SELECT p.paper_id
                         FROM unnest(@plannedFrom::date[], @plannedTo::date[]) AS r(first_day, last_day)
                         JOIN delivery_papers d ON d.subscriber_id = s.id AND d.day BETWEEN r.first_day AND r.last_day
                         CROSS JOIN LATERAL unnest(d.paper_ids) AS p(paper_id)
                         WHERE d.day <> z.day AND p.paper_id = ANY(@windowPapers))
            FROM unnest(@zones::text[], @hours::int[], @days::date[], @weekdays::int[]) WITH ORDINALITY AS z(zone, hour, day, weekday, n)
            JOIN subscribers s ON coalesce(s.time_zone, '') = z.zone AND coalesce(s.delivery_hour, -1) = z.hour
            WHERE s.status = 'active' AND (s.frequency = 'daily' OR s.weekday = z.weekday)
              AND NOT EXISTS (SELECT 1 FROM suppressions x WHERE x.email = s.email_key)
            """;
        // The papers planned before are read per subscriber while this slot's own are being written on the other connections.
        // A read-only transaction, for the settings of its one statement.
        await using var transaction = await connection.BeginTransactionAsync(cancellationToken);
        await KeyedLookups.ApplyAsync(transaction, cancellationToken);
        await using var command = new NpgsqlCommand(sql, connection, transaction);
        command.Parameters.AddWithValue("defaultMaxPapers", matcher.DefaultMaxPapers);
        command.Parameters.AddWithValue("plannedFrom", plannedOn.From);
        command.Parameters.AddWithValue("plannedTo", plannedOn.To);
        command.Parameters.AddWithValue("windowPapers", windowPapers);
        command.Parameters.AddWithValue("zones", dueHours.Select(due => due.Hour.TimeZone).ToArray());
        command.Parameters.AddWithValue("hours", dueHours.Select(due => due.Hour.Hour).ToArray());
        command.Parameters.AddWithValue("days", dueHours.Select(due => due.Hour.Day).ToArray());
        command.Parameters.AddWithValue("weekdays", dueHours.Select(due => due.Hour.Weekday).ToArray());
        await using var reader = await command.ExecuteReaderAsync(cancellationToken);
        while (await reader.ReadAsync(cancellationToken))
        {
            var subscriber = new SubscriberTopics(reader.GetInt64(0), reader.GetString(1), reader.GetInt32(2),
                reader.GetFieldValue<string[]>(7), reader.GetFieldValue<long[]>(8));
            var dueHour = dueHours[(int)reader.GetInt64(5) - 1];
            var frequency = reader.GetString(4);
            var scheduled = frequency == Daily ? dueHour.PapersThroughTheDayBefore : dueHour.PapersThroughTheWeekBefore;
            var papersThrough = reader.IsDBNull(6) ? scheduled : Max(reader.GetFieldValue<DateOnly>(6), scheduled.AddDays(-1));
            yield return new DueSubscriber(subscriber, reader.GetFieldValue<DateOnly>(3), frequency, papersThrough);
        }
        await reader.DisposeAsync();
        await transaction.CommitAsync(cancellationToken);
    }

    /// <summary>A due hour as the columns hold it: also as NULL ('' and -1 there) where it is the operator's default zone or hour.</summary>
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

    /// <summary>Days from <c>From[i]</c> to <c>To[i]</c>, each range after the one before it and apart from it.</summary>
    private sealed record DayRanges(DateOnly[] From, DateOnly[] To);

    /// <summary>
    /// The delivery days that can hold any of <paramref name="papers"/>: those within a window of a day one of them was
    /// listed on. A delivery's papers come from the days of its window, the latest of them at most a day after its local
    /// date (a subscriber's date can be behind the papers' day) and the first at most <see cref="WindowDays"/> before it; a
    /// day's margin more each side. Not simply every day since the first listing: a paper that trends again months later
    /// made every due subscriber's lookup read months of their deliveries (50,000 subscribers with a year of digests: 51.1 s
    /// to plan everyone's slot, against 5.5 s now; the slots benchmark's --history-days).
    /// </summary>
    private static async Task<DayRanges> PlannableDaysAsync(NpgsqlConnection connection, IReadOnlyCollection<long> papers, CancellationToken cancellationToken)
    {
        const int before = 2, after = WindowDays + 1;
        var listed = await connection.QueryAsync<DateOnly>(new CommandDefinition(
            "SELECT DISTINCT day FROM paper_days WHERE paper_id = ANY(@papers) ORDER BY day", new { papers = papers.ToArray() },
            cancellationToken: cancellationToken));
        List<DateOnly> from = [], to = [];
        foreach (var day in listed)
        {
            if (to.Count > 0 && day.AddDays(-before) <= to[^1].AddDays(1))
            {
                to[^1] = day.AddDays(after);
            }
            else
            {
                from.Add(day.AddDays(-before));
                to.Add(day.AddDays(after));
            }
        }
        return new DayRanges([.. from], [.. to]);
    }

    private async Task<int> InsertAsync(NpgsqlConnection connection, List<PlannedDelivery> batch, DateOnly papersThrough, CancellationToken cancellationToken)
    {
        if (batch.Count == 0)
        {
            return 0;
        }
        // The paper ids come as their own column rather than read back out of the inserted jsonb: returning the wide
        // papers from the insert, only to parse them again, spilled each batch to a temporary file (~4 MB per 5,000).
        // Only subscribers who still exist get a delivery: one erased since the slot read them is left out, and one being
        // erased now is waited for (SubscriberDeletion, in the same transaction).
        const string sql = """
            WITH planned AS (
                INSERT INTO deliveries (subscriber_id, day, papers, next_attempt_at, created_at)
                SELECT id, day, papers::jsonb, @now, @now FROM unnest(@ids, @days, @papers) AS t(id, day, papers)
                WHERE EXISTS (SELECT 1 FROM subscribers s WHERE s.id = t.id)
                ON CONFLICT (subscriber_id, day) DO NOTHING
                RETURNING id, subscriber_id, day
            ), queued AS (
                INSERT INTO delivery_queue (delivery_id, day) SELECT id, day FROM planned
            )
            INSERT INTO delivery_papers (subscriber_id, day, paper_ids, papers_through)
            SELECT planned.subscriber_id, planned.day, t.paper_ids::bigint[], @papersThrough
            FROM planned JOIN unnest(@ids, @days, @paperIds) AS t(id, day, paper_ids) ON t.id = planned.subscriber_id AND t.day = planned.day
            """;
        await using var transaction = await connection.BeginTransactionAsync(cancellationToken);
        await connection.ExecuteAsync(new CommandDefinition(SubscriberDeletion.WaitForDeletions, transaction: transaction, cancellationToken: cancellationToken));
        var added = await connection.ExecuteAsync(new CommandDefinition(sql, new
        {
            now = time.GetUtcNow(),
            ids = batch.Select(row => row.SubscriberId).ToArray(),
            days = batch.Select(row => row.Day).ToArray(),
            papers = batch.Select(row => row.Papers).ToArray(),
            paperIds = batch.Select(row => row.PaperIds).ToArray(),
            papersThrough,
        }, transaction, cancellationToken: cancellationToken));
        await transaction.CommitAsync(cancellationToken);
        return added;
    }

    /// <summary>
    /// Refreshes the queue's statistics when the rows just added are a tenth or more of what they last counted: what
    /// autovacuum's analyze does (its default scale factor), done now rather than at its next round, which may come after
    /// the sending. The new rows carry a day the statistics have not seen; without it the claims' planner took the day's
    /// 100,000 rows for a few hundred and sorted the whole queue at every claim (580 ms a claim, against ~2 ms after).
    /// A role that does not own the table gets a warning from PostgreSQL here, not an error.
    /// </summary>
    private static async Task AnalyzeQueueAsync(NpgsqlConnection connection, long added, CancellationToken cancellationToken)
    {
        if (added == 0)
        {
            return;
        }
        var counted = await connection.ExecuteScalarAsync<float>(new CommandDefinition(
            "SELECT reltuples FROM pg_class WHERE oid = 'delivery_queue'::regclass", cancellationToken: cancellationToken));
        if (added >= 0.1 * Math.Max(counted, 0))
        {
            await connection.ExecuteAsync(new CommandDefinition("ANALYZE delivery_queue", cancellationToken: cancellationToken));
        }
    }

    private async Task RecordSlotAsync(
        NpgsqlConnection connection, DateTimeOffset slot, long matched, long added, bool bySchedule, CancellationToken cancellationToken)
    {
        const string sql = """
            INSERT INTO digest_slots (slot, planned_at, matched, planned, by_schedule) VALUES (@slot, @now, @matched, @added, @bySchedule)
            ON CONFLICT (slot) DO UPDATE SET planned_at = EXCLUDED.planned_at, matched = EXCLUDED.matched,
                                             planned = digest_slots.planned + EXCLUDED.planned,
                                             by_schedule = digest_slots.by_schedule OR EXCLUDED.by_schedule
            """;
        await connection.ExecuteAsync(new CommandDefinition(sql, new { slot, now = time.GetUtcNow(), matched, added, bySchedule },
            cancellationToken: cancellationToken));
    }

    private static DateOnly Max(DateOnly x, DateOnly y) => x > y ? x : y;
}
