using System.Diagnostics;
using Npgsql;

namespace Subscriptions.Benchmarks;

/// <summary>Issue 4: the time and memory to compute every subscriber's capped list.</summary>
internal static class MatchingBenchmark
{
    public static async Task RunAsync(int subscribers, int runs)
    {
        Console.WriteLine($"Matching benchmark: 100 papers, {subscribers:N0} active subscribers with 1-5 topics each, {runs} run(s)");
        var load = Stopwatch.StartNew();
        var connectionString = await BenchData.CreateAsync(subscribers);
        Console.WriteLine($"Loaded in {load.Elapsed.TotalSeconds:F1} s: {await BenchData.ScalarAsync(connectionString, "SELECT count(*) FROM topics"):N0} topics, " +
            $"{await BenchData.ScalarAsync(connectionString, "SELECT count(DISTINCT text) FROM topics"):N0} distinct");

        await using var dataSource = NpgsqlDataSource.Create(connectionString);
        // Words only, as this benchmark measured before meaning existed; the meaning benchmark runs both.
        var matcher = BenchData.Matcher(dataSource, semantic: false);
        var times = new List<double>();
        double peak = 0;
        for (var run = 1; run <= runs; run++)
        {
            GC.Collect();
            PeakMemory.Reset();
            var stopwatch = Stopwatch.StartNew();
            long lists = 0, papers = 0;
            await foreach (var list in matcher.MatchAllAsync(BenchData.Day, CancellationToken.None))
            {
                lists++;
                papers += list.Papers.Count;
            }
            stopwatch.Stop();
            times.Add(stopwatch.Elapsed.TotalSeconds);
            var runPeak = PeakMemory.Megabytes;
            peak = Math.Max(peak, runPeak);
            Console.WriteLine($"Run {run}: {stopwatch.Elapsed.TotalSeconds:F2} s, {lists:N0} subscribers with a list " +
                $"({subscribers - lists:N0} without a match), {papers:N0} papers in all, {lists / stopwatch.Elapsed.TotalSeconds:N0} lists/s, " +
                $"peak working set {runPeak:F0} MB");
        }
        times.Sort();
        Console.WriteLine($"Median: {times[times.Count / 2]:F2} s for {subscribers:N0} subscribers; peak working set {peak:F0} MB");
    }
}
