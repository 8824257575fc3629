using System.Diagnostics;
using Microsoft.Extensions.Configuration;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Logging.Abstractions;
using Microsoft.Extensions.Options;
using Npgsql;
using Subscriptions.Meaning;
using Subscriptions.Papers;
using Subscriptions.Subscribers;

namespace Subscriptions.Benchmarks;

/// <summary>
/// Issue 12: matching every subscriber with meaning off and on in one run, embedding a day of 500 papers,
/// the latency of signups that embed new topics, and the process's peak memory with the model loaded.
/// </summary>
internal static class MeaningBenchmark
{
    public static async Task RunAsync(int subscribers, int runs, int signups)
    {
        Console.WriteLine($"Meaning benchmark: 100 papers, {subscribers:N0} active subscribers with 1-5 topics each, {runs} run(s) each way");
        var load = Stopwatch.StartNew();
        var connectionString = await BenchData.CreateAsync(subscribers);
        Console.WriteLine($"Loaded in {load.Elapsed.TotalSeconds:F1} s: {await BenchData.ScalarAsync(connectionString, "SELECT count(*) FROM topics"):N0} topics, " +
            $"{await BenchData.ScalarAsync(connectionString, "SELECT count(DISTINCT text) FROM topics"):N0} distinct");
        await using var dataSource = NpgsqlDataSource.Create(connectionString);

        await MatchAsync(dataSource, semantic: false, subscribers, runs);

        var loading = Stopwatch.StartNew();
        var embedder = Embedder(semantic: true);
        embedder.Embed(["a first text, to load the model"], CancellationToken.None);
        Console.WriteLine($"Model {embedder.ModelName} loaded in {loading.Elapsed.TotalSeconds:F1} s");
        var store = new EmbeddingStore(dataSource, embedder, NullLogger<EmbeddingStore>.Instance);
        var embedding = Stopwatch.StartNew();
        var (papers, topics) = await store.EmbedStaleAsync(all: false, _ => { }, CancellationToken.None);
        Console.WriteLine($"Embedded the day's {papers} papers and {topics:N0} distinct topics in {embedding.Elapsed.TotalSeconds:F1} s (at ingest and signup in production)");
        await MatchAsync(dataSource, semantic: true, subscribers, runs);

        EmbedDayOfPapers(embedder, 500);
        await SignupLatencyAsync(connectionString, signups);
    }

    private static TextEmbedder Embedder(bool semantic) => new(Options.Create(new MeaningOptions { Semantic = semantic }));

    private static async Task MatchAsync(NpgsqlDataSource dataSource, bool semantic, int subscribers, int runs)
    {
        var matcher = BenchData.Matcher(dataSource, semantic);
        var times = new List<double>();
        double peak = 0;
        for (var run = 1; run <= runs; run++)
        {
            GC.Collect();
            PeakMemory.Reset();
            var stopwatch = Stopwatch.StartNew();
            long lists = 0, matched = 0, byMeaning = 0;
            await foreach (var list in matcher.MatchAllAsync(BenchData.Day, CancellationToken.None))
            {
                lists++;
                matched += list.Papers.Count;
                byMeaning += list.Papers.Count(paper => paper.Topics.Count == 0);
            }
            stopwatch.Stop();
            times.Add(stopwatch.Elapsed.TotalSeconds);
            var runPeak = PeakMemory.Megabytes;
            peak = Math.Max(peak, runPeak);
            Console.WriteLine($"  meaning {(semantic ? "on " : "off")} run {run}: {stopwatch.Elapsed.TotalSeconds:F2} s, {lists:N0} subscribers with a list " +
                $"({subscribers - lists:N0} without), {matched:N0} papers ({byMeaning:N0} by meaning only), peak working set {runPeak:F0} MB");
        }
        times.Sort();
        Console.WriteLine($"Meaning {(semantic ? "on" : "off")}: median {times[times.Count / 2]:F2} s for {subscribers:N0} subscribers; peak working set {peak:F0} MB");
    }

    private static void EmbedDayOfPapers(TextEmbedder embedder, int count)
    {
        var fixture = TextPageFormat.Parse(File.ReadAllText(FindPayload("trending-papers-day.txt"))).Papers;
        var texts = Enumerable.Range(0, count)
            .Select(i => TextEmbedder.PaperText($"{fixture[i % fixture.Count].Title} ({i})", fixture[i % fixture.Count].Abstract))
            .ToList();
        PeakMemory.Reset();
        var stopwatch = Stopwatch.StartNew();
        embedder.Embed(texts, CancellationToken.None);
        Console.WriteLine($"Embedding a day of {count} real papers (title and abstract): {stopwatch.Elapsed.TotalSeconds:F1} s, " +
            $"{count / stopwatch.Elapsed.TotalSeconds:F0} papers/s, peak working set {PeakMemory.Megabytes:F0} MB");
    }

    /// <summary>
    /// Signups as the endpoint does them (validation, then the store, which embeds the topics and writes the subscriber and its
    /// confirmation in one transaction), each with three topics no one typed before; the HTTP layer is left out.
    /// </summary>
    private static async Task SignupLatencyAsync(string connectionString, int signups)
    {
        var builder = Host.CreateApplicationBuilder(new HostApplicationBuilderSettings { DisableDefaults = true });
        builder.Configuration.AddInMemoryCollection(new Dictionary<string, string?>
        {
            ["ConnectionStrings:Postgres"] = connectionString,
            ["App:BaseUrl"] = "https://papers.bench.example",
            ["App:TokenSecret"] = "a-secret-used-only-by-the-benchmark-run",
            ["Mail:From"] = "Trending Papers <papers@bench.example>",
        });
        builder.Services.AddSubscribers();
        using var host = builder.Build();
        host.Services.GetRequiredService<IStartupValidator>().Validate();
        var validator = host.Services.GetRequiredService<SignupValidator>();
        var store = host.Services.GetRequiredService<SubscriberStore>();
        var latencies = new List<double>();
        for (var i = 0; i < signups + 10; i++)
        {
            string[] topics = [$"topic {i} on sparse probing of vision transformers", $"benchmark {i} of agents", $"depth {i} from video"];
            var stopwatch = Stopwatch.StartNew();
            var (signup, errors) = await validator.ValidateAsync(new SignupRequest($"new{i}@bench.example", topics, FromForm: false), CancellationToken.None);
            await store.SignUpAsync(signup?.Email ?? throw new InvalidOperationException(string.Join("; ", errors.Keys)), signup.Topics, signup.Delivery, CancellationToken.None);
            stopwatch.Stop();
            if (i >= 10)
            {
                latencies.Add(stopwatch.Elapsed.TotalMilliseconds);
            }
        }
        latencies.Sort();
        Console.WriteLine($"Signup with 3 new topics ({signups} after 10 warm-up): p50 {latencies[latencies.Count / 2]:F1} ms, " +
            $"p95 {latencies[(int)(latencies.Count * 0.95)]:F1} ms, max {latencies[^1]:F1} ms");
    }

    private static string FindPayload(string name)
    {
        for (var folder = new DirectoryInfo(AppContext.BaseDirectory); folder is not null; folder = folder.Parent)
        {
            var path = Path.Combine(folder.FullName, "tests", "Subscriptions.Tests", "Payloads", name);
            if (File.Exists(path))
            {
                return path;
            }
        }
        throw new FileNotFoundException($"tests/Subscriptions.Tests/Payloads/{name} not found above {AppContext.BaseDirectory}");
    }
}
