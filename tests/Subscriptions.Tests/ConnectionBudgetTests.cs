using System.Net;
using Microsoft.Extensions.DependencyInjection;
using Npgsql;
using Subscriptions.Database;
using Subscriptions.Tests.Infrastructure;

namespace Subscriptions.Tests;

/// <summary>
/// A burst of signups larger than the database's connection limit: the instance stays within its pool and every
/// request waits its turn, rather than taking every connection the server has and failing with 53300.
/// </summary>
public sealed class ConnectionBudgetTests : IAsyncLifetime
{
    // A small server, as a managed PostgreSQL or one shared by several instances is: 30 connections in all.
    private const int ServerConnections = 30;
    private const int Burst = 200;
    private TestDatabase _database = null!;

    public async Task InitializeAsync() => _database = await TestDatabase.OnOwnClusterAsync($"-c max_connections={ServerConnections}");

    public Task DisposeAsync() => _database.DisposeAsync();

    [Fact]
    public async Task ABurstOfSignupsBeyondTheServersConnectionsIsAllAcceptedWithinThePool()
    {
        // The connection string as an operator writes it: no pool size, so the service's default applies.
        var connectionString = new NpgsqlConnectionStringBuilder(_database.ConnectionString);
        connectionString.Remove("Maximum Pool Size");
        Assert.False(DatabaseOptions.SetsPoolSize(connectionString.ConnectionString));
        await using var app = new TestApp(_database, settings: new Dictionary<string, string?> { ["ConnectionStrings:Postgres"] = connectionString.ConnectionString });
        using var client = app.CreatePlainClient();

        var answers = await Task.WhenAll(Enumerable.Range(0, Burst).Select(i => client.SignUpAsync($"burst{i}@example.org", "lidar")));

        Assert.All(answers, answer => Assert.Equal(HttpStatusCode.Accepted, answer.StatusCode));
        Assert.Equal(Burst, await _database.ScalarAsync<long>("SELECT count(*) FROM subscribers WHERE email LIKE 'burst%'"));
        var opened = await _database.ScalarAsync<long>("SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() AND backend_type = 'client backend'");
        Assert.InRange(opened, 1, DatabaseOptions.DefaultMaxPoolSize + 2); // the pool, and this test's own connection(s)
        // Nor does the connection string set automatic preparation, so the service's default applies too.
        var used = new NpgsqlConnectionStringBuilder(app.Services.GetRequiredService<NpgsqlDataSource>().ConnectionString);
        Assert.Equal(DatabaseOptions.DefaultMaxAutoPrepare, used.MaxAutoPrepare);
    }

    [Fact]
    public async Task AnOperatorsMaxAutoPrepareIsKeptAsWritten()
    {
        // Behind PgBouncer in transaction mode, for one: prepared statements must be off.
        var connectionString = new NpgsqlConnectionStringBuilder(_database.ConnectionString) { MaxAutoPrepare = 0 };
        await using var app = new TestApp(_database, settings: new Dictionary<string, string?> { ["ConnectionStrings:Postgres"] = connectionString.ConnectionString });
        using var client = app.CreatePlainClient();

        Assert.Equal(HttpStatusCode.Accepted, (await client.SignUpAsync("unprepared@example.org", "lidar")).StatusCode);
        Assert.Equal(0, new NpgsqlConnectionStringBuilder(app.Services.GetRequiredService<NpgsqlDataSource>().ConnectionString).MaxAutoPrepare);
    }

    [Theory]
    [InlineData("Host=db;Maximum Pool Size=50", true)]
    [InlineData("Host=db;max pool size=50", true)]
    [InlineData("Host=db;MaxPoolSize=50", true)]
    [InlineData("Host=db;Minimum Pool Size=5", false)]
    [InlineData("Host=db", false)]
    public void APoolSizeInTheConnectionStringIsTheOperatorsAnyNameItHas(string connectionString, bool sets) =>
        Assert.Equal(sets, DatabaseOptions.SetsPoolSize(connectionString));

    [Theory]
    [InlineData("Host=db;Max Auto Prepare=0", true)]
    [InlineData("Host=db;maxautoprepare=10", true)]
    [InlineData("Host=db;Auto Prepare Min Usages=2", false)]
    [InlineData("Host=db", false)]
    public void AutoPrepareInTheConnectionStringIsTheOperatorsAnyNameItHas(string connectionString, bool sets) =>
        Assert.Equal(sets, DatabaseOptions.SetsAutoPrepare(connectionString));
}
