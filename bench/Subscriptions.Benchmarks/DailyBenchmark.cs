using System.Diagnostics;
using System.Globalization;
using Dapper;
using Microsoft.Extensions.Configuration;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Options;
using Npgsql;
using Subscriptions.Digest;
using Subscriptions.Email;
using Subscriptions.Papers;

namespace Subscriptions.Benchmarks;

/// <summary>
/// Issue 6: the whole daily run — match, plan, render, send, record — through the service's own code,
/// to Postfix's smtp-sink, with smtp-source over the same connections as the ceiling. Issue 10: each run
/// sends the day three times, with DKIM signing off, with an RSA-2048 key and with an Ed25519 key, for a row of each.
/// </summary>
internal static class DailyBenchmark
{
    private sealed record Run(double Plan, double Send, double Total, long Sent, double PeakMegabytes)
    {
        public double EmailsPerSecond => Sent / Send;
    }

    public static async Task RunAsync(int subscribers, int runs, int connections, bool statements, bool signed, bool warmUp, bool progress)
    {
        Console.WriteLine($"Daily run benchmark: 100 papers, {subscribers:N0} subscribers, {connections} SMTP connections, {runs} run(s)" +
            (warmUp ? "" : ", no warm-up (run 1 is the first of a fresh process)"));
        var postfix = await Postfix.LocateAsync();
        var load = Stopwatch.StartNew();
        var connectionString = await BenchData.CreateAsync(subscribers);
        await BenchData.EmbedAsync(connectionString);
        Console.WriteLine($"Loaded in {load.Elapsed.TotalSeconds:F1} s");
        var (sink, port) = await postfix.StartSinkAsync();
        string dataDirectory;
        await using (var connection = new NpgsqlConnection(connectionString))
        {
            dataDirectory = await connection.ExecuteScalarAsync<string>("SHOW data_directory") ?? "";
        }
        var cpu = CpuAccount.For(dataDirectory, sink);
        // DKIM on: every email signed with a fresh key, as `dkim generate` makes one (RSA-2048, or with --algorithm ed25519).
        var keyDirectory = Directory.CreateTempSubdirectory("subscriptions-bench-dkim-");
        var ways = new List<(string Name, string? KeyPath)> { ("off", null) };
        // --no-dkim: the DKIM-off way alone (a third of the time).
        foreach (var (name, key) in signed ? new[] { ("RSA-2048", DkimKey.CreateRsa(2048)), ("Ed25519", DkimKey.CreateEd25519()) } : [])
        {
            using (key)
            {
                var keyPath = Path.Combine(keyDirectory.FullName, $"{name}.pem");
                await File.WriteAllTextAsync(keyPath, key.ExportPem());
                ways.Add((name, keyPath));
            }
        }
        try
        {
            // A service sends its digest from a process that has been running: the measured runs start
            // with the code already compiled by a warm-up run (each way) over a small database of its own.
            // --no-warm-up: run 1 is what a freshly started `digest`, or a run right after a restart, gets.
            if (warmUp)
            {
                var warmUpData = await BenchData.CreateAsync(Math.Min(subscribers, 20_000));
                await BenchData.EmbedAsync(warmUpData);
                foreach (var (name, keyPath) in ways)
                {
                    using var warmHost = BuildHost(warmUpData, port, connections, keyPath);
                    await BenchData.ExecuteAsync(warmUpData, "TRUNCATE deliveries, delivery_queue, delivery_papers");
                    await RunOnceAsync(warmHost, run: 0, name, cpu, progress);
                }
            }

            if (statements)
            {
                await BenchData.ExecuteAsync(connectionString, "CREATE EXTENSION IF NOT EXISTS pg_stat_statements");
                await BenchData.ExecuteAsync(connectionString, "SELECT pg_stat_statements_reset()"); // the measured runs' only
            }
            var hosts = ways.Select(way => BuildHost(connectionString, port, connections, way.KeyPath)).ToList();
            var host = hosts[0];
            var results = ways.Select(_ => new List<Run>()).ToList();
            // DKIM off and on alternate within each run, so that every way sees the same machine.
            for (var run = 1; run <= runs; run++)
            {
                for (var way = 0; way < ways.Count; way++)
                {
                    await BenchData.ExecuteAsync(connectionString, "TRUNCATE deliveries, delivery_queue, delivery_papers");
                    await BenchData.ExecuteAsync(connectionString, "VACUUM ANALYZE deliveries");
                    await BenchData.ExecuteAsync(connectionString, "VACUUM ANALYZE delivery_queue");
                    results[way].Add(await RunOnceAsync(hosts[way], run, ways[way].Name, cpu, progress));
                    if (statements)
                    {
                        await PrintSlowestStatementsAsync(connectionString);
                    }
                }
            }

            Console.WriteLine($"PostgreSQL: {await BenchData.ScalarAsync(connectionString, "SELECT n_tup_hot_upd FROM pg_stat_user_tables WHERE relname = 'deliveries'"):N0} " +
                $"of {await BenchData.ScalarAsync(connectionString, "SELECT n_tup_upd FROM pg_stat_user_tables WHERE relname = 'deliveries'"):N0} updates of deliveries were HOT");
            var averageSize = await AverageMessageSizeAsync(host, connectionString);

            Console.WriteLine($"smtp-source: {subscribers:N0} messages of {averageSize:N0} bytes over {connections} connections kept open (-d)");
            var ceiling = new List<double>();
            for (var run = 1; run <= runs; run++)
            {
                var elapsed = await postfix.RunSourceAsync(port, subscribers, averageSize, connections);
                ceiling.Add(subscribers / elapsed.TotalSeconds);
                Console.WriteLine($"smtp-source run {run}: {elapsed.TotalSeconds:F1} s, {subscribers / elapsed.TotalSeconds:N0} messages/s");
            }

            var source = Median(ceiling);
            Console.WriteLine();
            Console.WriteLine($"| DKIM | subscribers | emails sent | match + plan | send | total | emails/s | peak memory | smtp-source msg/s | ratio |");
            Console.WriteLine($"| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |");
            foreach (var (name, rows) in ways.Select((way, i) => (way.Name, results[i])))
            {
                var ours = Median(rows.Select(r => r.EmailsPerSecond));
                Console.WriteLine(string.Create(CultureInfo.InvariantCulture,
                    $"| {name} | {subscribers:N0} | {rows[0].Sent:N0} | {Median(rows.Select(r => r.Plan)):F1} s | {Median(rows.Select(r => r.Send)):F1} s | " +
                    $"{Median(rows.Select(r => r.Total)):F1} s | {ours:N0} | {rows.Max(r => r.PeakMegabytes):F0} MB | {source:N0} | {ours / source:P0} |"));
            }
            Console.WriteLine("(medians of the runs; peak memory is the highest working set of this process over all runs)");
            // Each run's ways ran minutes apart on the same machine: their own ratios, beside the ratio of the medians.
            for (var way = 1; way < ways.Count; way++)
            {
                var pairs = results[0].Zip(results[way], (off, on) => on.EmailsPerSecond / off.EmailsPerSecond).ToList();
                Console.WriteLine(string.Create(CultureInfo.InvariantCulture,
                    $"DKIM with {ways[way].Name} sends at {Median(results[way].Select(r => r.EmailsPerSecond)) / Median(results[0].Select(r => r.EmailsPerSecond)):P0} of the DKIM-off rate " +
                    $"(run by run: {string.Join(", ", pairs.Select(ratio => ratio.ToString("P0", CultureInfo.InvariantCulture)))}; median {Median(pairs):P0})."));
            }
            hosts.ForEach(built => built.Dispose());
        }
        finally
        {
            sink.Kill();
            sink.Dispose();
            keyDirectory.Delete(recursive: true);
        }
    }

    private static IHost BuildHost(string connectionString, int port, int connections, string? dkimKeyPath)
    {
        var builder = Host.CreateApplicationBuilder(new HostApplicationBuilderSettings { DisableDefaults = true });
        builder.Configuration.AddInMemoryCollection(new Dictionary<string, string?>
        {
            ["ConnectionStrings:Postgres"] = connectionString + ";Maximum Pool Size=50",
            ["App:BaseUrl"] = "https://papers.bench.example",
            ["App:TokenSecret"] = "a-secret-used-only-by-the-benchmark-run",
            ["Smtp:Host"] = "127.0.0.1",
            ["Smtp:Port"] = port.ToString(CultureInfo.InvariantCulture),
            ["Smtp:Security"] = "None",
            ["Smtp:Connections"] = connections.ToString(CultureInfo.InvariantCulture),
            ["Mail:From"] = "Trending Papers <papers@bench.example>",
        });
        if (dkimKeyPath is not null)
        {
            builder.Configuration.AddInMemoryCollection(new Dictionary<string, string?>
            {
                ["Dkim:Domain"] = "bench.example",
                ["Dkim:Selector"] = "bench",
                ["Dkim:PrivateKeyPath"] = dkimKeyPath,
            });
        }
        builder.Logging.AddConsole().SetMinimumLevel(LogLevel.Warning);
        builder.Services.AddDigest();
        var host = builder.Build();
        host.Services.GetRequiredService<IStartupValidator>().Validate();
        return host;
    }

    /// <summary>One run; with <paramref name="progress"/> (--progress), the sending's counts each second as the service prints them.</summary>
    private static async Task<Run> RunOnceAsync(IHost host, int run, string dkim, CpuAccount cpu, bool progress)
    {
        // As in a service whose sentence model has been idle for a minute (it is let go then): a daily run reads the
        // vectors made at ingest and signup, and needs no model. Sent right after an ingest, the first minute of a run
        // would hold it too (~150 MB).
        Meaning.SentenceModel.ReleaseIdle(TimeSpan.Zero);
        GC.Collect();
        PeakMemory.Reset();
        var jitAtStart = JitTally.Take();
        JitTally? jitAtSendStart = null;
        var planStarted = cpu.Take(); // before the clock starts: reading every process's /proc entry is the benchmark's own time
        var stopwatch = Stopwatch.StartNew();
        double planned = 0;
        CpuAccount.Snapshot? sendStarted = null;
        GcTally? gcAtSendStart = null;
        var summary = await host.Services.GetRequiredService<DigestRunner>().RunAsync(BenchData.Day, ingestFirst: false, dryRun: false, line =>
        {
            if (progress && line.StartsWith("Sending:", StringComparison.Ordinal))
            {
                Console.WriteLine(string.Create(CultureInfo.InvariantCulture, $"    {stopwatch.Elapsed.TotalSeconds,5:F1} s  {line}"));
            }
            if (line.StartsWith("Planned:", StringComparison.Ordinal))
            {
                planned = stopwatch.Elapsed.TotalSeconds;
                sendStarted = cpu.Take();
                jitAtSendStart = JitTally.Take();
                gcAtSendStart = GcTally.Take();
            }
        }, CancellationToken.None);
        var sendCpu = sendStarted is null ? null : cpu.Take().Since(sendStarted);
        var total = stopwatch.Elapsed.TotalSeconds;
        var result = new Run(planned, total - planned, total, summary.Sent, PeakMemory.Megabytes);
        Console.WriteLine(string.Create(CultureInfo.InvariantCulture,
            $"{(run == 0 ? "Warm-up" : $"Run {run}")}, DKIM {dkim}: match + plan {planned:F1} s ({summary.Planned:N0} deliveries), send {result.Send:F1} s ({summary.Sent:N0} sent, " +
            $"{summary.Failed:N0} failed, {result.EmailsPerSecond:N0}/s), total {total:F1} s, peak working set {result.PeakMegabytes:F0} MB"));
        if (sendCpu is not null)
        {
            Console.WriteLine($"  match + plan: {sendStarted!.Since(planStarted).Of(planned)}; {jitAtSendStart!.Since(jitAtStart)}");
            Console.WriteLine($"  sending: {sendCpu.PerMessage(summary.Sent)}");
            Console.WriteLine($"  sending: {GcTally.Take().Since(gcAtSendStart!).PerMessage(summary.Sent)}");
            // Compiling is what a fresh process pays above a warm one (tier 0, then the hot methods again, optimized).
            Console.WriteLine($"  sending: {JitTally.Take().Since(jitAtSendStart!)}");
        }
        return result;
    }

    /// <summary>What the JIT compiled in this process: methods, and the time it spent compiling them (on every thread).</summary>
    private sealed record JitTally(long Methods, TimeSpan Time)
    {
        public static JitTally Take() => new(System.Runtime.JitInfo.GetCompiledMethodCount(), System.Runtime.JitInfo.GetCompilationTime());

        public override string ToString() => string.Create(CultureInfo.InvariantCulture, $"JIT compiled {Methods:N0} methods in {Time.TotalSeconds:F2} s");

        public JitTally Since(JitTally start) => new(Methods - start.Methods, Time - start.Time);
    }

    /// <summary>
    /// What the garbage collector did in this process: bytes allocated, collections (all of them, those that reached gen1 or
    /// further, those of gen2), and time paused. Many collections reaching gen1 mean objects outlive their email (finalizers).
    /// </summary>
    private sealed record GcTally(long Allocated, int Collections, int ReachingGen1, int OfGen2, TimeSpan Paused)
    {
        public static GcTally Take() => new(GC.GetTotalAllocatedBytes(), GC.CollectionCount(0), GC.CollectionCount(1), GC.CollectionCount(2), GC.GetTotalPauseDuration());

        public GcTally Since(GcTally start) => new(Allocated - start.Allocated, Collections - start.Collections, ReachingGen1 - start.ReachingGen1,
            OfGen2 - start.OfGen2, Paused - start.Paused);

        public string PerMessage(long messages) => string.Create(CultureInfo.InvariantCulture,
            $"allocated {Allocated / 1024.0 / Math.Max(messages, 1):N1} KB per email; {Collections:N0} collections ({ReachingGen1:N0} reaching gen1, {OfGen2:N0} of gen2); paused {Paused.TotalMilliseconds:N0} ms");
    }

    /// <summary>The statements that took PostgreSQL longest since the last call (pg_stat_statements, of the whole cluster).</summary>
    private static async Task PrintSlowestStatementsAsync(string connectionString)
    {
        await using var connection = new NpgsqlConnection(connectionString);
        const string slowest = """
            SELECT total_exec_time, calls, mean_exec_time * 1000, shared_blks_hit / greatest(calls, 1), left(regexp_replace(query, '\s+', ' ', 'g'), 120)
            FROM pg_stat_statements ORDER BY total_exec_time DESC LIMIT 8
            """;
        Console.WriteLine("  PostgreSQL's slowest statements: total, calls, mean, buffers a call");
        foreach (var (total, calls, mean, buffers, query) in await connection.QueryAsync<(double, long, double, long, string)>(slowest))
        {
            Console.WriteLine(string.Create(CultureInfo.InvariantCulture, $"    {total,8:F0} ms {calls,8:N0} × {mean,9:F1} µs {buffers,7:N0}  {query}"));
        }
        await connection.ExecuteAsync("SELECT pg_stat_statements_reset()");
    }

    /// <summary>The mean size of the emails of the run, rendered by the same code from a sample of the deliveries.</summary>
    private static async Task<int> AverageMessageSizeAsync(IHost host, string connectionString)
    {
        await using var connection = new NpgsqlConnection(connectionString);
        var sample = (await connection.QueryAsync<(long SubscriberId, string Email, byte[] Key, string Papers)>("""
            SELECT d.subscriber_id, s.email, s.subscription_key, d.papers::text FROM deliveries d JOIN subscribers s ON s.id = d.subscriber_id
            ORDER BY d.id LIMIT 500
            """)).ToList();
        var papers = (await host.Services.GetRequiredService<PaperStore>().PapersOfDayAsync(BenchData.Day, CancellationToken.None)).ToDictionary(p => p.Id);
        var emails = host.Services.GetRequiredService<DigestEmails>();
        long bytes = 0;
        foreach (var (id, email, key, planned) in sample)
        {
            using var stream = new MemoryStream();
            await emails.Render(deliveryId: 0, email, id, key, BenchData.Day, PlannedPaper.Deserialize(planned), papers).WriteToAsync(stream);
            bytes += stream.Length;
        }
        return (int)(bytes / Math.Max(sample.Count, 1));
    }

    private static double Median(IEnumerable<double> values)
    {
        var sorted = values.Order().ToList();
        return sorted[sorted.Count / 2];
    }
}
