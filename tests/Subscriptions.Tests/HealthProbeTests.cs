using System.Net;
using Subscriptions.Tests.Infrastructure;

namespace Subscriptions.Tests;

public sealed class HealthProbeTests
{
    [Fact]
    public async Task LiveAnswersWithoutTheDatabaseAndReadyFollowsIt()
    {
        var database = new TestDatabase();
        await database.InitializeAsync();
        await using var app = new TestApp(database);
        using var client = app.CreatePlainClient();

        var live = await client.GetAsync("/healthz/live");
        Assert.Equal(HttpStatusCode.OK, live.StatusCode);
        Assert.Equal("healthy", (await live.ReadJsonAsync()).GetProperty("status").GetString());
        var ready = await client.GetAsync("/healthz/ready");
        Assert.Equal(HttpStatusCode.OK, ready.StatusCode);
        Assert.Equal("reachable", (await ready.ReadJsonAsync()).GetProperty("database").GetString());

        await database.DisposeAsync();
        await PostgresServer.DropDatabaseAsync(database.ConnectionString);

        var stillLive = await client.GetAsync("/healthz/live");
        Assert.Equal(HttpStatusCode.OK, stillLive.StatusCode);
        var notReady = await client.GetAsync("/healthz/ready");
        Assert.Equal(HttpStatusCode.ServiceUnavailable, notReady.StatusCode);
        Assert.Equal("application/problem+json", notReady.Content.Headers.ContentType?.MediaType);
        // The combined endpoint keeps answering as it always has.
        Assert.Equal(HttpStatusCode.ServiceUnavailable, (await client.GetAsync("/healthz")).StatusCode);
        // Each probe of an unready instance logged two errors (the database's check and the migrations'), every 10 s of an outage.
        Assert.DoesNotContain(app.Logs.GetSnapshot(), log => log.Category!.StartsWith("Microsoft.Extensions.Diagnostics.HealthChecks", StringComparison.Ordinal));
    }
}
