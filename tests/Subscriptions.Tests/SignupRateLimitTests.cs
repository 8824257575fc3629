using System.Net;
using Microsoft.Extensions.DependencyInjection;
using Subscriptions.Subscribers;
using Subscriptions.Tests.Infrastructure;

namespace Subscriptions.Tests;

public sealed class SignupRateLimitTests(TestDatabase database) : IClassFixture<TestDatabase>
{
    [Fact]
    public async Task TooManySignupsFromOneClientGet429WithRetryAfter()
    {
        await using var app = new TestApp(database, settings: new Dictionary<string, string?> { ["App:SignupsPerMinute"] = "3" });
        using var client = app.CreatePlainClient();

        for (var i = 0; i < 3; i++)
        {
            Assert.Equal(HttpStatusCode.Accepted, (await client.SignUpAsync($"burst{i}@example.org", "robotics")).StatusCode);
        }
        var limited = await client.SignUpAsync("burst3@example.org", "robotics");

        Assert.Equal(HttpStatusCode.TooManyRequests, limited.StatusCode);
        var retryAfter = Assert.Single(limited.Headers.GetValues("Retry-After"));
        Assert.InRange(int.Parse(retryAfter, System.Globalization.CultureInfo.InvariantCulture), 1, 60);
        Assert.Equal("application/problem+json", limited.Content.Headers.ContentType?.MediaType);
        Assert.Equal(429, (await limited.ReadJsonAsync()).GetProperty("status").GetInt32());
        Assert.Null(await database.SubscriberStatusAsync("burst3@example.org"));

        // Only signups are limited; the rest of the site still answers.
        Assert.Equal(HttpStatusCode.OK, (await client.GetAsync("/")).StatusCode);
    }

    [Fact]
    public async Task ASignupThatWouldWaitBehindTooManyIsTurnedAwayAtOnceWith503()
    {
        // One turn and no room to wait, held by the test: as when a burst has filled the queue.
        var gate = new SignupGate(permits: 1, queueLimit: 0);
        await using var app = new TestApp(database, services: services => services.AddSingleton(gate));
        using var client = app.CreatePlainClient();
        var held = await gate.EnterAsync(CancellationToken.None);

        var busy = await client.SignUpAsync("turned-away@example.org", "robotics");
        var page = await client.PostFormAsync("/subscriptions", ("email", "turned-away@example.org"), ("topics", "robotics"));

        Assert.Equal(HttpStatusCode.ServiceUnavailable, busy.StatusCode);
        Assert.Equal("2", Assert.Single(busy.Headers.GetValues("Retry-After")));
        Assert.Equal("application/problem+json", busy.Content.Headers.ContentType?.MediaType);
        Assert.Equal("Too many signups at this moment", (await busy.ReadJsonAsync()).GetProperty("title").GetString());
        Assert.Equal(HttpStatusCode.ServiceUnavailable, page.StatusCode);
        Assert.Null(await database.SubscriberStatusAsync("turned-away@example.org"));

        held.Dispose();
        Assert.Equal(HttpStatusCode.Accepted, (await client.SignUpAsync("turned-away@example.org", "robotics")).StatusCode);
    }

    [Fact]
    public async Task PreviewsAreLimitedPerClientButPlainPagesAreNot()
    {
        await using var app = new TestApp(database, settings: new Dictionary<string, string?> { ["App:PreviewsPerMinute"] = "2" });
        using var client = app.CreatePlainClient();

        Assert.Equal(HttpStatusCode.OK, (await client.GetAsync("/api/preview?topics=lidar")).StatusCode);
        Assert.Equal(HttpStatusCode.OK, (await client.GetAsync("/?preview=1&topics=lidar")).StatusCode);
        var limited = await client.GetAsync("/api/preview?topics=lidar");

        Assert.Equal(HttpStatusCode.TooManyRequests, limited.StatusCode);
        Assert.Equal("application/problem+json", limited.Content.Headers.ContentType?.MediaType);
        Assert.True(limited.Headers.Contains("Retry-After"));
        for (var i = 0; i < 5; i++)
        {
            Assert.Equal(HttpStatusCode.OK, (await client.GetAsync("/")).StatusCode);
        }
    }

    [Fact]
    public async Task SavedPreferencesCountAgainstTheSignupLimit()
    {
        // Saving embeds new topics as a signup does; it had no limit at all.
        await using var app = new TestApp(database, settings: new Dictionary<string, string?> { ["App:SignupsPerMinute"] = "2" });
        using var client = app.CreatePlainClient();
        client.DefaultRequestHeaders.Accept.ParseAdd("text/html");
        var (id, key) = await database.AddSubscriberAsync("saver@example.org", "active", maxPapers: null, "lidar");
        var link = $"/preferences?token={app.Services.GetRequiredService<Subscriptions.Subscribers.LinkTokens>().Create(Subscriptions.Subscribers.LinkPurpose.Preferences, id, key)}";

        var saved = new List<HttpStatusCode>();
        for (var i = 0; i < 3; i++)
        {
            saved.Add((await client.PostFormAsync(link, ("topics", $"topic number {i}"), ("max_papers", "5"))).StatusCode);
        }

        Assert.Equal([HttpStatusCode.OK, HttpStatusCode.OK, HttpStatusCode.TooManyRequests], saved);
        Assert.Equal(["topic number 1"], await database.QueryAsync<string>("SELECT text FROM topics WHERE subscriber_id = @id", new { id }));
    }

    [Fact]
    public async Task ABrowserFormOverTheLimitGetsAPageNotJson()
    {
        await using var app = new TestApp(database, settings: new Dictionary<string, string?> { ["App:SignupsPerMinute"] = "1" });
        using var client = app.CreatePlainClient();
        client.DefaultRequestHeaders.Accept.ParseAdd("text/html");

        var first = await client.PostFormAsync("/subscriptions", ("email", "form1@example.org"), ("topics", "lidar"));
        var second = await client.PostFormAsync("/subscriptions", ("email", "form2@example.org"), ("topics", "lidar"));

        Assert.Equal(HttpStatusCode.Accepted, first.StatusCode);
        Assert.Equal(HttpStatusCode.TooManyRequests, second.StatusCode);
        Assert.Equal("text/html", second.Content.Headers.ContentType?.MediaType);
        Assert.Contains("Try again in", await second.Content.ReadAsStringAsync());
    }
}
