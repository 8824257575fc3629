using System.Diagnostics;
using Microsoft.Extensions.Options;
using Npgsql;
using Subscriptions.Digest;

namespace Subscriptions.Benchmarks;

/// <summary>
/// Issue 15: N subscribers spread over 24 hourly slots and several time zones. First the whole day planned as one
/// slot (everyone at the operator's default time, as the single daily run planned them), then the same day as
/// 24 hourly slots: each slot's planning time, and the total against the single run. Both find two days of
/// history already planned (a day that shares papers with this one), so "no repeats" has something to leave out.
/// </summary>
internal static class SlotsBenchmark
{
    private static readonly string[] Zones =
        ["UTC", "Europe/Berlin", "America/New_York", "America/Los_Angeles", "Asia/Tokyo", "Asia/Kolkata", "Australia/Sydney", "America/Sao_Paulo"];

    public static async Task RunAsync(int subscribers)
    {
        Console.WriteLine($"Slots benchmark: 100 papers a day, {subscribers:N0} active subscribers over 24 hours and {Zones.Length} time zones, a tenth weekly");
        var load = Stopwatch.StartNew();
        var connectionString = await BenchData.CreateAsync(subscribers);
        await using var dataSource = NpgsqlDataSource.Create(connectionString);
        // Two days before: the same 100 papers re-listed with 60 of them (so 60 are "already sent" to whoever matched them).
        var history = BenchData.Day.AddDays(-2);
        await BenchData.ExecuteAsync(connectionString, $"""
            INSERT INTO paper_days (day, source, paper_id, upvotes, rank, fetched_at)
            SELECT '{history:yyyy-MM-dd}', source, paper_id, upvotes, rank, now() FROM paper_days WHERE rank <= 60
            """);
        Console.WriteLine($"Loaded in {load.Elapsed.TotalSeconds:F1} s");

        var digest = new DigestOptions { Schedule = "0 0 7 * * ?", TimeZone = "UTC" };
        // Words only, as the single run it is compared with; the meaning benchmark measures what meaning adds to matching.
        var matcher = BenchData.Matcher(dataSource, semantic: false);
        var planner = new DeliveryPlanner(dataSource, matcher, Options.Create(digest), TimeProvider.System);

        var historyPlan = await TimeAsync(() => planner.PlanSlotAsync(DigestSchedule.DefaultSlot(digest, history), history, CancellationToken.None));
        Console.WriteLine($"History ({history:yyyy-MM-dd}, one slot): {historyPlan.Plan.Added:N0} deliveries in {historyPlan.Seconds:F2} s");

        // The single run: everyone at the default time.
        var single = await TimeAsync(() => planner.PlanSlotAsync(DigestSchedule.DefaultSlot(digest, BenchData.Day), BenchData.Day, CancellationToken.None));
        Console.WriteLine($"Single run ({BenchData.Day:yyyy-MM-dd}, everyone in one slot): {single.Plan.Covered:N0} due, {single.Plan.Matched:N0} matched, " +
            $"{single.Plan.Added:N0} deliveries in {single.Seconds:F2} s");

        // The same day again as 24 slots: the single run's deliveries and slot record go, and everyone gets a zone and an hour.
        await BenchData.ExecuteAsync(connectionString, $"DELETE FROM deliveries WHERE day <> '{history:yyyy-MM-dd}'; DELETE FROM digest_slots;");
        await BenchData.ExecuteAsync(connectionString, $"""
            UPDATE subscribers SET time_zone = (ARRAY['{string.Join("','", Zones)}'])[1 + id % {Zones.Length}],
                                   delivery_hour = (id / {Zones.Length}) % 24,
                                   frequency = CASE WHEN id % 10 = 0 THEN 'weekly' ELSE 'daily' END,
                                   weekday = CASE WHEN id % 10 = 0 THEN 1 + (id / 10) % 7 END
            """);
        // And the rows just deleted and updated are cleaned up now: left to autovacuum, that ran during the first slots and
        // took about a third of the machine's CPU from them (seen with perf).
        foreach (var table in new[] { "subscribers", "deliveries", "delivery_queue", "delivery_papers", "digest_slots" })
        {
            await BenchData.ExecuteAsync(connectionString, $"VACUUM ANALYZE {table}");
        }

        var times = new List<double>();
        long covered = 0, matched = 0, added = 0;
        var first = new DateTimeOffset(BenchData.Day.ToDateTime(TimeOnly.MinValue), TimeSpan.Zero);
        for (var slot = first; slot < first.AddDays(1); slot += DeliverySlots.Length)
        {
            var (plan, seconds) = await TimeAsync(() => planner.PlanSlotAsync(slot, papersDay: null, CancellationToken.None));
            times.Add(seconds);
            covered += plan.Covered;
            matched += plan.Matched;
            added += plan.Added;
            Console.WriteLine($"  slot {slot:HH:mm}Z: {plan.Covered,9:N0} due, {plan.Matched,9:N0} matched, {plan.Added,9:N0} planned in {seconds:F2} s");
        }
        var sorted = times.Order().ToList();
        Console.WriteLine($"24 slots: {covered:N0} due, {matched:N0} matched, {added:N0} deliveries; planning per slot median {sorted[12]:F2} s, " +
            $"max {sorted[^1]:F2} s; total {times.Sum():F2} s against {single.Seconds:F2} s for the single run ({times.Sum() / single.Seconds:P0})");
    }

    private static async Task<(SlotPlan Plan, double Seconds)> TimeAsync(Func<Task<SlotPlan>> plan)
    {
        var stopwatch = Stopwatch.StartNew();
        var result = await plan();
        return (result, stopwatch.Elapsed.TotalSeconds);
    }
}
