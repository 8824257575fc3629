using System.Net;
using Microsoft.Extensions.DependencyInjection;
using Subscriptions.Digest;
using Subscriptions.Papers;
using Subscriptions.Subscribers;
using Subscriptions.Tests.Infrastructure;

namespace Subscriptions.Tests;

/// <summary>The Prometheus scrape at /metrics, its own port, and readiness that includes the migrations.</summary>
public sealed class ObservabilityTests(TestDatabase database) : IClassFixture<TestDatabase>, IAsyncLifetime
{
    private static readonly DateOnly Day = new(2026, 11, 23);
    private TestSmtpServer _smtp = null!;

    public async Task InitializeAsync() => _smtp = await TestSmtpServer.StartNewAsync();

    public async Task DisposeAsync() => await _smtp.DisposeAsync();

    [Fact]
    public async Task MetricsCountWhatTheServiceDidUnderTheirDocumentedNames()
    {
        await using var app = new TestApp(database, _smtp);
        using var client = app.CreatePlainClient();
        var file = Path.Combine(AppContext.BaseDirectory, "Payloads", "huggingface-daily-papers.json");
        await app.Services.GetRequiredService<PaperIngest>().IngestAsync(Day, ["file"], file, CancellationToken.None);
        await database.AddSubscriberAsync("metrics-reader@example.org", "active", null, "depth estimation");
        var (leaverId, leaverKey) = await database.AddSubscriberAsync("metrics-leaver@example.org", "active", null, "protein folding");
        Assert.Equal(HttpStatusCode.Accepted, (await client.SignUpAsync("metrics-new@example.org", "lidar")).StatusCode);
        var unsubscribe = app.Services.GetRequiredService<LinkTokens>().Create(LinkPurpose.Unsubscribe, leaverId, leaverKey);
        Assert.Equal(HttpStatusCode.OK, (await client.PostAsync($"/unsubscribe?token={unsubscribe}", null)).StatusCode);
        var summary = await app.Services.GetRequiredService<DigestRunner>().RunAsync(Day, ingestFirst: false, dryRun: false, _ => { }, CancellationToken.None);
        Assert.True(summary.Sent >= 1);

        var response = await client.GetAsync("/metrics");

        Assert.Equal(HttpStatusCode.OK, response.StatusCode);
        var text = await response.Content.ReadAsStringAsync();
        // Other test classes run apps in this process too, so values are at least, not exactly, what this test did.
        AssertAtLeast(text, "subscriptions_signups_total{", 1);
        AssertAtLeast(text, "subscriptions_unsubscribes_total{", 1);
        AssertAtLeast(text, "subscriptions_emails_sent_total{", 1, "kind=\"digest\"");
        AssertAtLeast(text, "subscriptions_papers_ingested_total{", 3, "source=\"file\"");
        AssertAtLeast(text, "subscriptions_digest_run_duration_seconds_count{", 1);
        Assert.Contains("\nsubscriptions_delivery_queue_depth", text);
        Assert.DoesNotContain("_total_total", text);
        // The platform's instruments: ASP.NET Core, the runtime, Npgsql.
        Assert.Contains("http_server_request_duration_seconds", text);
        Assert.Contains("dotnet_gc_collections_total", text);
        Assert.Contains("db_client_operation_duration_seconds", text);
    }

    [Fact]
    public async Task MetricsCanBeTurnedOff()
    {
        await using var app = new TestApp(database, settings: new Dictionary<string, string?> { ["Metrics:Enabled"] = "false" });
        using var client = app.CreatePlainClient();

        Assert.Equal(HttpStatusCode.NotFound, (await client.GetAsync("/metrics")).StatusCode);
    }

    [Fact]
    public async Task MetricsOnAPortOfTheirOwnLeaveTheAppOnThePortTheContainerImageNames()
    {
        // The image names its port with ASPNETCORE_HTTP_PORTS, not urls: the metrics listener took the app's port away.
        var metricsPort = LocalPrograms.FreePort();
        await using var serving = await ServiceBinary.ServeAsync(new Dictionary<string, string>
        {
            ["ConnectionStrings__Postgres"] = database.ConnectionString,
            ["App__TokenSecret"] = "a-secret-for-the-metrics-port-test-of-the-image",
            ["Digest__Schedule"] = "0 0 3 1 1 ? 2099",
            ["Metrics__Port"] = metricsPort.ToString(System.Globalization.CultureInfo.InvariantCulture),
        }, asTheImageNamesItsPort: true);
        using var http = new HttpClient();

        Assert.Equal(HttpStatusCode.OK, (await http.GetAsync(new Uri(serving.Address, "/healthz/ready"))).StatusCode);
        Assert.Equal(HttpStatusCode.NotFound, (await http.GetAsync(new Uri(serving.Address, "/metrics"))).StatusCode);
        Assert.Equal(HttpStatusCode.OK, (await http.GetAsync($"http://127.0.0.1:{metricsPort}/metrics")).StatusCode);
    }

    [Fact]
    public async Task MetricsOnAPortOfTheirOwnAreNotOnTheAppsPort()
    {
        var port = LocalPrograms.FreePort();
        await using var app = new TestApp(database, settings: new Dictionary<string, string?> { ["Metrics:Port"] = port.ToString(System.Globalization.CultureInfo.InvariantCulture) });
        var address = app.StartOnKestrel();
        using var http = new HttpClient();

        var own = await http.GetAsync($"http://127.0.0.1:{port}/metrics");
        var main = await http.GetAsync(new Uri(address, "/metrics"));

        Assert.Equal(HttpStatusCode.OK, own.StatusCode);
        Assert.Contains("# TYPE", await own.Content.ReadAsStringAsync());
        Assert.Equal(HttpStatusCode.NotFound, main.StatusCode);
        Assert.Equal(HttpStatusCode.OK, (await http.GetAsync(new Uri(address, "/healthz/live"))).StatusCode);

        // The port, not the Host header the client writes, decides: the app's port does not give the scrape to whoever names
        // the metrics port, and the metrics port (plain HTTP on every interface) serves neither the console nor the signups.
        using var spoofed = new HttpRequestMessage(HttpMethod.Get, new Uri(address, "/metrics"));
        spoofed.Headers.Host = $"127.0.0.1:{port}";
        Assert.Equal(HttpStatusCode.NotFound, (await http.SendAsync(spoofed)).StatusCode);
        Assert.Equal(HttpStatusCode.NotFound, (await http.GetAsync(new Uri(address, "/metrics/"))).StatusCode); // routed to the scrape too
        foreach (var path in new[] { "/", "/admin/signin", "/healthz/live" })
        {
            Assert.Equal(HttpStatusCode.NotFound, (await http.GetAsync($"http://127.0.0.1:{port}{path}")).StatusCode);
        }
    }

    [Fact]
    public async Task ReadyWantsEveryMigrationApplied()
    {
        var own = new TestDatabase();
        await own.InitializeAsync();
        try
        {
            await using var app = new TestApp(own);
            using var client = app.CreatePlainClient();
            Assert.Equal(HttpStatusCode.OK, (await client.GetAsync("/healthz/ready")).StatusCode);

            // As if a newer version's scripts were half applied, or an older journal restored.
            await own.ExecuteAsync("DELETE FROM schema_migrations WHERE name = (SELECT max(name) FROM schema_migrations)");

            var ready = await client.GetAsync("/healthz/ready");
            Assert.Equal(HttpStatusCode.ServiceUnavailable, ready.StatusCode);
            Assert.Equal("The database is not migrated", (await ready.ReadJsonAsync()).GetProperty("title").GetString());
            Assert.Equal(HttpStatusCode.OK, (await client.GetAsync("/healthz")).StatusCode);
        }
        finally
        {
            await own.DisposeAsync();
            await PostgresServer.DropDatabaseAsync(own.ConnectionString);
        }
    }

    private static void AssertAtLeast(string exposition, string series, double minimum, string label = "")
    {
        var line = exposition.Split('\n').FirstOrDefault(line => line.StartsWith(series, StringComparison.Ordinal) && line.Contains(label, StringComparison.Ordinal))
            ?? throw new Xunit.Sdk.XunitException($"No {series} in:\n{exposition}");
        var value = double.Parse(line.Split(' ')[^1], System.Globalization.CultureInfo.InvariantCulture);
        Assert.True(value >= minimum, $"{line}: expected at least {minimum}");
    }
}
