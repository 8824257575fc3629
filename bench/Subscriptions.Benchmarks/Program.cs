using System.Diagnostics;
using System.Globalization;
using Dapper;
using Npgsql;
using Subscriptions.Benchmarks;
using Subscriptions.Matching;
using Subscriptions.Papers;
using Subscriptions.Tests.Infrastructure;

// dotnet run -c Release --project bench/Subscriptions.Benchmarks -- matching [--subscribers N] [--runs R]
var mode = args.FirstOrDefault(a => !a.StartsWith('-')) ?? "matching";
var subscribers = IntOption("--subscribers", 1_000_000);
var runs = IntOption("--runs", 3);
if (mode != "matching")
{
    Console.Error.WriteLine("Usage: Subscriptions.Benchmarks matching [--subscribers N] [--runs R]");
    return 64;
}

var day = new DateOnly(2026, 11, 24);
Console.WriteLine($"Matching benchmark: 100 papers, {subscribers:N0} active subscribers with 1-5 topics each, {runs} run(s)");
Console.WriteLine($"Machine: {Environment.ProcessorCount} cores, .NET {Environment.Version}");

var connectionString = await PostgresServer.CreateDatabaseAsync("bench");
await using var dataSource = NpgsqlDataSource.Create(connectionString);

var load = Stopwatch.StartNew();
await new PaperStore(dataSource, TimeProvider.System).SaveDayAsync(day, "file", Papers(), CancellationToken.None);
await LoadSubscribersAsync(dataSource, subscribers);
Console.WriteLine($"Loaded in {load.Elapsed.TotalSeconds:F1} s: {await ScalarAsync("SELECT count(*) FROM topics"):N0} topics, " +
    $"{await ScalarAsync("SELECT count(DISTINCT text) FROM topics"):N0} distinct");

var matcher = new TopicMatcher(dataSource);
var times = new List<double>();
long peakWorkingSet = 0;
for (var run = 1; run <= runs; run++)
{
    GC.Collect();
    GC.WaitForPendingFinalizers();
    using var sampler = new PeakSampler();
    var stopwatch = Stopwatch.StartNew();
    long lists = 0, papers = 0;
    await foreach (var list in matcher.MatchAllAsync(day, 10, CancellationToken.None))
    {
        lists++;
        papers += list.Papers.Count;
    }
    stopwatch.Stop();
    times.Add(stopwatch.Elapsed.TotalSeconds);
    peakWorkingSet = Math.Max(peakWorkingSet, sampler.Peak);
    Console.WriteLine($"Run {run}: {stopwatch.Elapsed.TotalSeconds:F2} s, {lists:N0} subscribers with a list " +
        $"({subscribers - lists:N0} without a match), {papers:N0} papers in all, {lists / stopwatch.Elapsed.TotalSeconds:N0} lists/s, " +
        $"peak working set {sampler.Peak / 1024.0 / 1024.0:F0} MB");
}
times.Sort();
Console.WriteLine($"Median: {times[times.Count / 2]:F2} s for {subscribers:N0} subscribers; peak working set of this process {peakWorkingSet / 1024.0 / 1024.0:F0} MB " +
    $"(whole-process peak {Process.GetCurrentProcess().PeakWorkingSet64 / 1024.0 / 1024.0:F0} MB)");
return 0;

int IntOption(string name, int fallback)
{
    var index = Array.IndexOf(args, name);
    return index >= 0 && index + 1 < args.Length ? int.Parse(args[index + 1], CultureInfo.InvariantCulture) : fallback;
}

async Task<long> ScalarAsync(string sql)
{
    await using var connection = await dataSource.OpenConnectionAsync();
    return await connection.ExecuteScalarAsync<long>(sql);
}

static List<PaperRecord> Papers()
{
    var random = new Random(42);
    return [.. Enumerable.Range(0, 100).Select(i =>
    {
        var title = $"{Vocabulary.Methods[i % Vocabulary.Methods.Length]} for {Vocabulary.Tasks[i * 7 % Vocabulary.Tasks.Length]}";
        var abstractText = string.Join(' ', Enumerable.Range(0, 4).Select(_ => Vocabulary.Sentences[random.Next(Vocabulary.Sentences.Length)]))
            + $" We also discuss {Vocabulary.Topics[random.Next(Vocabulary.Topics.Length)].Trim('"')} and {Vocabulary.Topics[random.Next(Vocabulary.Topics.Length)].Trim('"')}.";
        return PaperRecord.Create($"2611.{10000 + i}", title + $" (part {i})", abstractText, ["A. Author", "B. Author"], DateTimeOffset.UtcNow, random.Next(0, 300));
    })];
}

static async Task LoadSubscribersAsync(NpgsqlDataSource dataSource, int count)
{
    await using var connection = await dataSource.OpenConnectionAsync();
    const string subscribersSql = """
        INSERT INTO subscribers (email, status, subscription_key, created_at, updated_at, confirmed_at)
        SELECT 'reader' || g || '@bench.example', 'active', decode(md5(g::text), 'hex'), now(), now(), now()
        FROM generate_series(1, @count) AS g
        """;
    await connection.ExecuteAsync(subscribersSql, new { count }, commandTimeout: 0);
    // 1 to 5 topics each, drawn from the vocabulary with a skew: a few topics are far more popular than the rest.
    const string topicsSql = """
        INSERT INTO topics (subscriber_id, position, text)
        SELECT s.id, k - 1, (@vocabulary::text[])[1 + floor(power(random(), 2) * @size)::int]
        FROM subscribers s, generate_series(1, 1 + (hashint4(s.id::int) & 2147483647) % 5) AS k
        """;
    await connection.ExecuteAsync(topicsSql, new { vocabulary = Vocabulary.Topics, size = Vocabulary.Topics.Length }, commandTimeout: 0);
    await connection.ExecuteAsync("VACUUM ANALYZE subscribers", commandTimeout: 0);
    await connection.ExecuteAsync("VACUUM ANALYZE topics", commandTimeout: 0);
}

/// <summary>Samples this process's working set every 20 ms, keeping the highest.</summary>
internal sealed class PeakSampler : IDisposable
{
    private readonly Timer _timer;
    private long _peak;

    public PeakSampler() => _timer = new Timer(_ => Sample(), null, 0, 20);

    public long Peak
    {
        get
        {
            Sample();
            return Interlocked.Read(ref _peak);
        }
    }

    private void Sample()
    {
        using var process = Process.GetCurrentProcess();
        var current = process.WorkingSet64;
        long seen;
        while (current > (seen = Interlocked.Read(ref _peak)) && Interlocked.CompareExchange(ref _peak, current, seen) != seen)
        {
        }
    }

    public void Dispose() => _timer.Dispose();
}
