using System.Net;
using Subscriptions.Tests.Infrastructure;

namespace Subscriptions.Tests;

public sealed class HealthTests
{
    [Fact]
    public async Task HealthReportsWhetherTheDatabaseAnswers()
    {
        var database = new TestDatabase();
        await database.InitializeAsync();
        await using var app = new TestApp(database);
        using var client = app.CreatePlainClient();

        var healthy = await client.GetAsync("/healthz");
        Assert.Equal(HttpStatusCode.OK, healthy.StatusCode);
        Assert.Equal("healthy", (await healthy.ReadJsonAsync()).GetProperty("status").GetString());

        await database.DisposeAsync();
        await PostgresServer.DropDatabaseAsync(database.ConnectionString);

        var unhealthy = await client.GetAsync("/healthz");
        Assert.Equal(HttpStatusCode.ServiceUnavailable, unhealthy.StatusCode);
        Assert.Equal("application/problem+json", unhealthy.Content.Headers.ContentType?.MediaType);
    }
}
