using Dapper;
using Microsoft.Extensions.DependencyInjection;
using Npgsql;
using Subscriptions.Papers;

namespace Subscriptions.Tests.Infrastructure;

/// <summary>A fresh, migrated database per test class, on the shared throwaway cluster.</summary>
public sealed class TestDatabase : IAsyncLifetime, IAsyncDisposable
{
    private readonly PostgresCluster? _cluster;
    private NpgsqlDataSource? _dataSource;

    public TestDatabase()
    {
    }

    private TestDatabase(PostgresCluster cluster) => _cluster = cluster;

    /// <summary>
    /// A database on a cluster of the test's own (started with <paramref name="settings"/>), which it may stop, hang or
    /// limit without disturbing other tests; disposing the database stops the cluster.
    /// </summary>
    internal static async Task<TestDatabase> OnOwnClusterAsync(string settings = "")
    {
        var database = new TestDatabase(await PostgresCluster.StartAsync(settings));
        await database.InitializeAsync();
        return database;
    }

    /// <summary>The test's own cluster, for a database made by <see cref="OnOwnClusterAsync"/>.</summary>
    internal PostgresCluster Cluster => _cluster ?? throw new InvalidOperationException("This database is on the shared cluster.");

    public string ConnectionString { get; private set; } = "";

    public NpgsqlDataSource DataSource => _dataSource ?? throw new InvalidOperationException("The database is not created yet.");

    public async Task InitializeAsync()
    {
        ConnectionString = _cluster is null ? await PostgresServer.CreateDatabaseAsync() : await _cluster.CreateDatabaseAsync();
        _dataSource = NpgsqlDataSource.Create(ConnectionString);
    }

    public async Task DisposeAsync()
    {
        if (_dataSource is not null)
        {
            await _dataSource.DisposeAsync();
        }
        if (_cluster is not null)
        {
            await _cluster.DisposeAsync();
        }
    }

    ValueTask IAsyncDisposable.DisposeAsync() => new(DisposeAsync());

    public async Task<T> ScalarAsync<T>(string sql, object? parameters = null)
    {
        await using var connection = await DataSource.OpenConnectionAsync();
        return await connection.ExecuteScalarAsync<T>(sql, parameters) ?? throw new InvalidOperationException($"No value from: {sql}");
    }

    public async Task<IReadOnlyList<T>> QueryAsync<T>(string sql, object? parameters = null)
    {
        await using var connection = await DataSource.OpenConnectionAsync();
        return [.. await connection.QueryAsync<T>(sql, parameters)];
    }

    /// <summary>Whether a session of this database waits for a lock in a statement like <paramref name="statement"/> (SQL <c>LIKE</c>).</summary>
    public Task<bool> SessionWaitsAsync(string statement) => ScalarAsync<bool>(
        "SELECT EXISTS (SELECT 1 FROM pg_stat_activity WHERE wait_event_type = 'Lock' AND datname = current_database() AND query LIKE @statement)",
        new { statement });

    /// <summary>How many sessions of this database wait for a lock in a statement like <paramref name="statement"/> (SQL <c>LIKE</c>).</summary>
    public Task<long> SessionsWaitingAsync(string statement) => ScalarAsync<long>(
        "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' AND datname = current_database() AND query LIKE @statement",
        new { statement });

    public async Task ExecuteAsync(string sql, object? parameters = null)
    {
        await using var connection = await DataSource.OpenConnectionAsync();
        await connection.ExecuteAsync(sql, parameters);
    }

    /// <summary>
    /// Waits until <paramref name="count"/> deliveries are recorded sent. A mail server has a message before the sender records
    /// it, so a test that saw the messages arrive waits for this too before it counts or stops anything.
    /// </summary>
    public Task WaitForSentDeliveriesAsync(long count, TimeSpan? timeout = null) =>
        Eventually.ValueAsync(() => ScalarAsync<long>("SELECT count(*) FROM deliveries WHERE status = 'sent'"),
            sent => sent == count, $"{count} deliveries to be recorded sent", sent => $"{sent} sent", timeout);

    /// <summary>Waits until the outbox row of <paramref name="email"/> has <paramref name="status"/>, and returns its last error.</summary>
    public async Task<string?> WaitForOutboxAsync(string email, string status, int minimumAttempts = 0)
    {
        const string sql = """
            SELECT o.status, o.attempts, o.last_error FROM email_outbox o JOIN subscribers s ON s.id = o.subscriber_id
            WHERE s.email = @email
            """;
        var row = await Eventually.ValueAsync(
            async () => Xunit.Assert.Single(await QueryAsync<(string Status, int Attempts, string? LastError)>(sql, new { email })),
            current => current.Status == status && current.Attempts >= minimumAttempts,
            $"the outbox row for {email} to be {status} after at least {minimumAttempts} attempt(s)",
            current => $"{current.Status} after {current.Attempts} attempt(s): {current.LastError}");
        return row.LastError;
    }

    /// <summary>Status of the subscriber with this address, or null when there is none.</summary>
    public async Task<string?> SubscriberStatusAsync(string email)
    {
        var statuses = await QueryAsync<string>("SELECT status FROM subscribers WHERE lower(email) = lower(@email)", new { email });
        return statuses.SingleOrDefault();
    }

    /// <summary>The one paper many digest tests need: "Lidar Odometry at Night", found by the topic "lidar".</summary>
    internal static PaperRecord LidarPaper =>
        PaperRecord.Create("2611.00003", "Lidar Odometry at Night", "Registration of scans.", ["Ana Sousa"], null, 5);

    /// <summary>A day's papers, stored through the service's own store as the Hugging Face source listed them.</summary>
    internal async Task SaveDayAsync(DateOnly day, params PaperRecord[] papers)
    {
        await using var app = new TestApp(this);
        await app.Services.GetRequiredService<PaperStore>().SaveDayAsync(day, "huggingface", papers, CancellationToken.None);
    }

    /// <summary>A subscriber written straight into the database, with its topics; returns its id and subscription key.</summary>
    public async Task<(long Id, byte[] Key)> AddSubscriberAsync(string email, string status, int? maxPapers, params string[] topics)
    {
        var key = Subscribers.LinkTokens.NewNonce();
        var id = await ScalarAsync<long>("""
            WITH s AS (
                INSERT INTO subscribers (email, status, subscription_key, max_papers, created_at, updated_at)
                VALUES (@email, @status, @key, @maxPapers, now(), now()) RETURNING id),
            t AS (
                INSERT INTO topics (subscriber_id, position, text)
                SELECT s.id, ordinality - 1, topic FROM s, unnest(@topics) WITH ORDINALITY AS t(topic, ordinality))
            SELECT id FROM s
            """, new { email, status, key, maxPapers, topics });
        return (id, key);
    }
}
