using System.Diagnostics;
using Microsoft.Extensions.Options;
using Npgsql;
using Subscriptions.Digest;

namespace Subscriptions.Benchmarks;

/// <summary>
/// Issue 15: N subscribers spread over 24 hourly slots and several time zones. First the whole day planned as one
/// slot, in a database where everyone has the operator's default time (as the single daily run planned them); then the
/// same day as 24 hourly slots, in a second database like the first whose subscribers chose their zone and hour at
/// signup: each slot's planning time, and the total against the single run. Each database first plans, the way it
/// plans the day, a history two days before that shares papers with the day, so "no repeats" has something to leave out.
/// The day before each has papers too (some of the day's, re-listed): a slot before the default time (07:00 UTC) plans them,
/// as by the schedule a day's papers are ingested at that time. With <c>--history-days N</c>, each database also has N
/// days of sent digests before that, for everyone, written day by day as planning writes them, and one of the day's papers
/// trended on the first of those days too: what a service that has run for a while plans against when an old paper trends
/// again.
/// </summary>
internal static class SlotsBenchmark
{
    private static readonly string[] Zones =
        ["UTC", "Europe/Berlin", "America/New_York", "America/Los_Angeles", "Asia/Tokyo", "Asia/Kolkata", "Australia/Sydney", "America/Sao_Paulo"];

    private static readonly DateOnly History = BenchData.Day.AddDays(-2);

    public static async Task RunAsync(int subscribers, int historyDays)
    {
        Console.WriteLine($"Slots benchmark: 100 papers a day, {subscribers:N0} active subscribers; 24 hours and {Zones.Length} time zones, a tenth weekly" +
            (historyDays > 0 ? $"; {historyDays:N0} days of digests sent before, and a paper of the day that trended on the first of them" : ""));
        var digest = new DigestOptions { Schedule = "0 0 7 * * ?", TimeZone = "UTC" };

        // The single run: everyone at the default time.
        double single;
        var singleDatabase = await CreateAsync(subscribers, timeZones: null, historyDays);
        await using (var dataSource = NpgsqlDataSource.Create(singleDatabase))
        {
            var planner = Planner(dataSource, digest);
            var history = await TimeAsync(() => planner.PlanSlotAsync(DigestSchedule.DefaultSlot(digest, History), History, CancellationToken.None));
            Console.WriteLine($"History ({History:yyyy-MM-dd}, one slot): {history.Plan.Added:N0} deliveries in {history.Seconds:F2} s");
            await SettleAsync(singleDatabase);
            var day = await TimeAsync(() => planner.PlanSlotAsync(DigestSchedule.DefaultSlot(digest, BenchData.Day), BenchData.Day, CancellationToken.None));
            Console.WriteLine($"Single run ({BenchData.Day:yyyy-MM-dd}, everyone in one slot): {day.Plan.Covered:N0} due, {day.Plan.Matched:N0} matched, " +
                $"{day.Plan.Added:N0} deliveries in {day.Seconds:F2} s");
            single = day.Seconds;
        }
        // Dropped, so that its pages leave PostgreSQL's buffers to the second database.
        await Subscriptions.Tests.Infrastructure.PostgresServer.DropDatabaseAsync(singleDatabase);

        // The same day as 24 slots, in a database whose history was planned in slots too.
        var slotsDatabase = await CreateAsync(subscribers, Zones, historyDays);
        await using (var dataSource = NpgsqlDataSource.Create(slotsDatabase))
        {
            var planner = Planner(dataSource, digest);
            await PlanDayAsync(planner, History, $"History ({History:yyyy-MM-dd}, 24 slots)", printEachSlot: false);
            await SettleAsync(slotsDatabase);
            var slots = await PlanDayAsync(planner, BenchData.Day, $"24 slots ({BenchData.Day:yyyy-MM-dd})", printEachSlot: true);
            Console.WriteLine($"24 slots in all: {slots:F2} s against {single:F2} s for the single run ({slots / single:P0})");
        }
    }

    private static async Task<string> CreateAsync(int subscribers, IReadOnlyList<string>? timeZones, int historyDays)
    {
        var load = Stopwatch.StartNew();
        var connectionString = await BenchData.CreateAsync(subscribers, timeZones);
        // Two days before: the same 100 papers re-listed with 60 of them (so 60 are "already sent" to whoever matched them).
        // The days before these two: 50 of them each, for the slots before the default time.
        await BenchData.ExecuteAsync(connectionString, $"""
            INSERT INTO paper_days (day, source, paper_id, upvotes, rank, fetched_at)
            SELECT '{History:yyyy-MM-dd}', source, paper_id, upvotes, rank, now() FROM paper_days WHERE rank <= 60;
            INSERT INTO paper_days (day, source, paper_id, upvotes, rank, fetched_at)
            SELECT days.day, source, paper_id, upvotes, rank - 50, now()
            FROM paper_days CROSS JOIN (VALUES ('{History.AddDays(-1):yyyy-MM-dd}'::date), ('{BenchData.Day.AddDays(-1):yyyy-MM-dd}'::date)) AS days(day)
            WHERE paper_days.day = '{BenchData.Day:yyyy-MM-dd}' AND rank > 50;
            """);
        if (historyDays > 0)
        {
            // Day by day, everyone's digest of the day after the one before (so one subscriber's rows lie on as many pages as
            // days, as they do in a service's database), each of 10 papers of its own days. The day's first paper trended on
            // the first of those days too, and the digests of that day carried it.
            var first = History.AddDays(-1 - historyDays);
            await BenchData.ExecuteAsync(connectionString, $"""
                INSERT INTO deliveries (subscriber_id, day, papers, status, attempts, next_attempt_at, created_at, sent_at)
                SELECT s.id, days.day, '[]', 'sent', 1, days.day, days.day, days.day
                FROM generate_series('{first:yyyy-MM-dd}'::date, '{History.AddDays(-2):yyyy-MM-dd}'::date, interval '1 day') AS days(day), subscribers s
                ORDER BY days.day, s.id;
                INSERT INTO delivery_papers (subscriber_id, day, paper_ids, papers_through)
                SELECT d.subscriber_id, d.day,
                       CASE WHEN d.day = '{first:yyyy-MM-dd}' THEN ARRAY[p.first_paper] ELSE ARRAY[]::bigint[] END
                         || ARRAY(SELECT 1000000000 + (d.day - '{first:yyyy-MM-dd}') * 100 + k FROM generate_series(1, 9) AS k),
                       d.day
                FROM deliveries d, (SELECT paper_id AS first_paper FROM paper_days WHERE day = '{BenchData.Day:yyyy-MM-dd}' AND rank = 1) AS p
                ORDER BY d.id;
                INSERT INTO paper_days (day, source, paper_id, upvotes, rank, fetched_at)
                SELECT '{first:yyyy-MM-dd}', source, paper_id, upvotes, rank, now() FROM paper_days WHERE day = '{BenchData.Day:yyyy-MM-dd}' AND rank = 1;
                """);
        }
        Console.WriteLine(timeZones is null
            ? $"Loaded everyone at the default time in {load.Elapsed.TotalSeconds:F1} s"
            : $"Loaded everyone in their own zone and hour in {load.Elapsed.TotalSeconds:F1} s");
        if (historyDays > 0)
        {
            await SettleAsync(connectionString);
        }
        return connectionString;
    }

    // Words only, as the single run it is compared with; the meaning benchmark measures what meaning adds to matching.
    private static DeliveryPlanner Planner(NpgsqlDataSource dataSource, DigestOptions digest) =>
        new(dataSource, BenchData.Matcher(dataSource, semantic: false), Options.Create(digest), TimeProvider.System,
            Microsoft.Extensions.Logging.Abstractions.NullLogger<DeliveryPlanner>.Instance);

    /// <summary>Plans the 24 slots of <paramref name="day"/> (UTC) one after the other; returns their total time.</summary>
    private static async Task<double> PlanDayAsync(DeliveryPlanner planner, DateOnly day, string label, bool printEachSlot)
    {
        var times = new List<double>();
        long covered = 0, matched = 0, added = 0;
        var first = new DateTimeOffset(day.ToDateTime(TimeOnly.MinValue), TimeSpan.Zero);
        for (var slot = first; slot < first.AddDays(1); slot += DeliverySlots.Length)
        {
            var (plan, seconds) = await TimeAsync(() => planner.PlanSlotAsync(slot, papersDay: null, CancellationToken.None));
            times.Add(seconds);
            covered += plan.Covered;
            matched += plan.Matched;
            added += plan.Added;
            if (printEachSlot)
            {
                Console.WriteLine($"  slot {slot:HH:mm}Z: {plan.Covered,9:N0} due, {plan.Matched,9:N0} matched, {plan.Added,9:N0} planned in {seconds:F2} s");
            }
        }
        var sorted = times.Order().ToList();
        Console.WriteLine($"{label}: {covered:N0} due, {matched:N0} matched, {added:N0} deliveries; planning per slot median {sorted[12]:F2} s, " +
            $"max {sorted[^1]:F2} s ({times.Count(seconds => seconds >= 2)} of 24 at 2 s or more); total {times.Sum():F2} s");
        return times.Sum();
    }

    /// <summary>
    /// The history's million new rows, vacuumed and analyzed before the day is timed: otherwise autovacuum reaches them at
    /// some point during the day's planning, in one database's run or the other's (the single run took 17.1–22.0 s).
    /// </summary>
    private static async Task SettleAsync(string connectionString)
    {
        foreach (var table in new[] { "deliveries", "delivery_queue", "delivery_papers" })
        {
            await BenchData.ExecuteAsync(connectionString, $"VACUUM ANALYZE {table}");
        }
    }

    private static async Task<(SlotPlan Plan, double Seconds)> TimeAsync(Func<Task<SlotPlan>> plan)
    {
        var stopwatch = Stopwatch.StartNew();
        var result = await plan();
        return (result, stopwatch.Elapsed.TotalSeconds);
    }
}
