using Dapper;
using Npgsql;
using Subscriptions.Papers;

namespace Subscriptions.Benchmarks;

/// <summary>One day of 100 papers and N active subscribers with 1 to 5 topics each, in a fresh database.</summary>
internal static class BenchData
{
    public static readonly DateOnly Day = new(2026, 11, 24);

    /// <summary>
    /// The database; with <paramref name="timeZones"/>, each subscriber has one of them and one of the 24 hours (a tenth
    /// weekly, on one of the 7 weekdays) from the start, as if they had chosen at signup.
    /// </summary>
    public static async Task<string> CreateAsync(int subscribers, IReadOnlyList<string>? timeZones = null)
    {
        var connectionString = await Subscriptions.Tests.Infrastructure.PostgresServer.CreateDatabaseAsync("bench");
        await using var dataSource = NpgsqlDataSource.Create(connectionString);
        await new PaperStore(dataSource, TimeProvider.System).SaveDayAsync(Day, "huggingface", Papers(), CancellationToken.None);

        await using var connection = await dataSource.OpenConnectionAsync();
        const string subscribersSql = """
            INSERT INTO subscribers (email, status, subscription_key, created_at, updated_at, confirmed_at,
                                     time_zone, delivery_hour, frequency, weekday)
            SELECT 'reader' || g || '@bench.example', 'active', decode(md5(g::text), 'hex'), now(), now(), now(),
                   CASE WHEN z.chosen THEN z.zones[1 + g % z.count] END,
                   CASE WHEN z.chosen THEN (g / z.count) % 24 END,
                   CASE WHEN z.chosen AND g % 10 = 0 THEN 'weekly' ELSE 'daily' END,
                   CASE WHEN z.chosen AND g % 10 = 0 THEN 1 + (g / 10) % 7 END
            FROM generate_series(1, @subscribers) AS g,
                 (SELECT @zones::text[] AS zones, cardinality(@zones::text[]) AS count, cardinality(@zones::text[]) > 0 AS chosen) AS z
            """;
        await connection.ExecuteAsync(subscribersSql, new { subscribers, zones = timeZones?.ToArray() ?? [] }, commandTimeout: 0);
        // 1 to 5 topics each, drawn from the vocabulary with a skew: a few topics are far more popular than the rest.
        const string topicsSql = """
            INSERT INTO topics (subscriber_id, position, text)
            SELECT s.id, k - 1, (@vocabulary::text[])[1 + floor(power(random(), 2) * @size)::int]
            FROM subscribers s, generate_series(1, 1 + (hashint4(s.id::int) & 2147483647) % 5) AS k
            """;
        await connection.ExecuteAsync(topicsSql, new { vocabulary = Vocabulary.Topics, size = Vocabulary.Topics.Length }, commandTimeout: 0);
        await connection.ExecuteAsync("VACUUM ANALYZE subscribers", commandTimeout: 0);
        await connection.ExecuteAsync("VACUUM ANALYZE topics", commandTimeout: 0);
        return connectionString;
    }

    /// <summary>
    /// The vectors of the day's papers and of every topic, made as the service makes them when it ingests a day and when a
    /// subscriber saves topics: before the daily run, which then reads them.
    /// </summary>
    public static async Task EmbedAsync(string connectionString)
    {
        await using var dataSource = NpgsqlDataSource.Create(connectionString);
        await Embeddings(dataSource, semantic: true).Store.EmbedStaleAsync(all: false, _ => { }, CancellationToken.None);
    }

    /// <summary>The service's matcher over the benchmark's database, with meaning on or off (words only), 10 papers per list.</summary>
    public static Matching.TopicMatcher Matcher(NpgsqlDataSource dataSource, bool semantic)
    {
        var (embedder, embeddings) = Embeddings(dataSource, semantic);
        return new Matching.TopicMatcher(dataSource, embeddings, embedder,
            Microsoft.Extensions.Options.Options.Create(new Matching.MatchingOptions { MaxPapers = 10 }));
    }

    private static (Meaning.TextEmbedder Embedder, Meaning.EmbeddingStore Store) Embeddings(NpgsqlDataSource dataSource, bool semantic)
    {
        var embedder = new Meaning.TextEmbedder(Microsoft.Extensions.Options.Options.Create(new Meaning.MeaningOptions { Semantic = semantic }));
        return (embedder, new Meaning.EmbeddingStore(dataSource, embedder, Microsoft.Extensions.Logging.Abstractions.NullLogger<Meaning.EmbeddingStore>.Instance));
    }

    public static async Task<long> ScalarAsync(string connectionString, string sql)
    {
        await using var connection = new NpgsqlConnection(connectionString);
        return await connection.ExecuteScalarAsync<long>(sql, commandTimeout: 0);
    }

    public static async Task ExecuteAsync(string connectionString, string sql)
    {
        await using var connection = new NpgsqlConnection(connectionString);
        await connection.ExecuteAsync(sql, commandTimeout: 0);
    }

    private static List<PaperRecord> Papers()
    {
        var random = new Random(42);
        return [.. Enumerable.Range(0, 100).Select(i =>
        {
            var title = $"{Vocabulary.Methods[i % Vocabulary.Methods.Length]} for {Vocabulary.Tasks[i * 7 % Vocabulary.Tasks.Length]}";
            var abstractText = string.Join(' ', Enumerable.Range(0, 4).Select(_ => Vocabulary.Sentences[random.Next(Vocabulary.Sentences.Length)]))
                + $" We also discuss {Vocabulary.Topics[random.Next(Vocabulary.Topics.Length)].Trim('"')} and {Vocabulary.Topics[random.Next(Vocabulary.Topics.Length)].Trim('"')}.";
            return PaperRecord.Create($"2611.{10000 + i}", title + $" (part {i})", abstractText,
                ["A. Author", "B. Author", "C. Author", "D. Author", "E. Author"], DateTimeOffset.UtcNow, random.Next(0, 300));
        })];
    }
}

/// <summary>
/// This process's peak resident memory since the last <see cref="Reset"/>: the kernel's own high-water mark (VmHWM), which
/// <c>/proc/self/clear_refs</c> resets. It replaced sampling the working set every 20 ms through <c>Process</c>, which read
/// every thread's <c>/proc</c> file at each sample (~3,000 file opens a second in the daily run) and could miss a short peak.
/// There is one mark per process: a reset starts it over for whatever else is measuring.
/// </summary>
internal static class PeakMemory
{
    public static void Reset() => File.WriteAllText("/proc/self/clear_refs", "5");

    public static double Megabytes => File.ReadLines("/proc/self/status").Where(line => line.StartsWith("VmHWM:", StringComparison.Ordinal))
        .Select(line => long.Parse(line["VmHWM:".Length..].Trim().Split(' ')[0], System.Globalization.CultureInfo.InvariantCulture) / 1024.0).Single();
}
