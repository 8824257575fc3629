using System.Net;
using Dapper;
using Microsoft.Extensions.DependencyInjection;
using Subscriptions.Papers;
using Subscriptions.Subscribers;
using Subscriptions.Tests.Infrastructure;

namespace Subscriptions.Tests;

public sealed class PreviewAndPreferencesTests(TestDatabase database) : IClassFixture<TestDatabase>, IAsyncLifetime
{
    private TestApp _app = null!;
    private HttpClient _client = null!;

    public async Task InitializeAsync()
    {
        _app = new TestApp(database, settings: new Dictionary<string, string?>
        {
            ["Digest:MaxPapers"] = "2",
            // These pin what the pages show of word matches; meaning is pinned by MeaningMatchingTests.
            ["Matching:Semantic"] = "false",
        });
        _client = _app.CreatePlainClient();
        var store = _app.Services.GetRequiredService<PaperStore>();
        await store.SaveDayAsync(new DateOnly(2026, 9, 1), "file", [
            TopicMatchingTests.Paper("2609.00001", "Old Lidar Paper", "From an earlier day.", upvotes: 1),
        ], CancellationToken.None);
        await store.SaveDayAsync(new DateOnly(2026, 9, 2), "file", [
            TopicMatchingTests.Paper("2609.00002", "Lidar Segmentation <Fast> & Cheap", "Segmenting point clouds.", upvotes: 5),
            TopicMatchingTests.Paper("2609.00003", "Radar Meets Lidar", "Sensor fusion.", upvotes: 50),
            TopicMatchingTests.Paper("2609.00004", "Lidar Odometry", "Registration of scans.", upvotes: 1),
            TopicMatchingTests.Paper("2609.00005", "Protein Folding", "Structure prediction.", upvotes: 9),
        ], CancellationToken.None);
    }

    public async Task DisposeAsync()
    {
        _client.Dispose();
        await _app.DisposeAsync();
    }

    [Fact]
    public async Task PreviewExplainsWhatTheLatestDayWouldBring()
    {
        var response = await _client.GetAsync("/api/preview?topics=lidar&topics=protein%20structure");

        Assert.Equal(HttpStatusCode.OK, response.StatusCode);
        var preview = await response.ReadJsonAsync();
        Assert.Equal("2026-09-02", preview.GetProperty("date").GetString());
        Assert.Equal(2, preview.GetProperty("maxPapers").GetInt32());
        var papers = preview.GetProperty("papers").EnumerateArray().ToList();
        Assert.Equal(["2609.00003", "2609.00002"], papers.Select(p => p.GetProperty("arxivId").GetString()));
        Assert.Equal(["lidar"], papers[0].GetProperty("matchedTopics").EnumerateArray().Select(t => t.GetString()));
    }

    [Fact]
    public async Task PreviewOfAnEarlierDay()
    {
        var preview = await (await _client.GetAsync("/api/preview?topics=lidar&date=2026-09-01")).ReadJsonAsync();

        Assert.Equal(["2609.00001"], preview.GetProperty("papers").EnumerateArray().Select(p => p.GetProperty("arxivId").GetString()));
    }

    [Theory]
    [InlineData("/api/preview", "topics")]
    [InlineData("/api/preview?topics=the%20of", "topics[0]")]
    [InlineData("/api/preview?topics=lidar&topics=!!!", "topics[1]")]
    [InlineData("/api/preview?topics=lidar&date=tomorrow", "date")]
    public async Task BadPreviewParametersGetAProblem(string url, string field)
    {
        var response = await _client.GetAsync(url);

        Assert.Equal(HttpStatusCode.BadRequest, response.StatusCode);
        Assert.Equal("application/problem+json", response.Content.Headers.ContentType?.MediaType);
        Assert.True((await response.ReadJsonAsync()).GetProperty("errors").TryGetProperty(field, out _));
    }

    [Fact]
    public async Task TheSignupPagePreviewsWithoutJavaScript()
    {
        var page = await _client.GetStringAsync("/");
        Assert.Contains("formaction=\"/\" formmethod=\"get\"", page);

        var preview = await _client.GetAsync("/?email=ada%40example.org&topics=lidar%0D%0Aradar&preview=1");

        Assert.Equal(HttpStatusCode.OK, preview.StatusCode);
        var html = await preview.Content.ReadAsStringAsync();
        Assert.Contains("would hold 2 papers", html);
        Assert.Contains("Lidar Segmentation &lt;Fast&gt; &amp; Cheap", html);
        Assert.Contains("mentions lidar · mentions radar", WebUtility.HtmlDecode(html));
        Assert.Contains("value=\"ada@example.org\"", html);
        Assert.Null(await database.SubscriberStatusAsync("ada@example.org"));
    }

    [Fact]
    public async Task PreferencesOfASubscriberErasedWhileTheyAreReadSayTheLinkHasEnded()
    {
        var (id, token) = await AddActiveSubscriberAsync("erasing@example.org", "lidar");
        // Another tab erases the data between the page's two reads: the subscription found, then its topics (held here until
        // the erasure has committed). The second read found no row, and the page answered 500.
        await using var eraser = await database.DataSource.OpenConnectionAsync();
        await using var erasure = await eraser.BeginTransactionAsync();
        await eraser.ExecuteAsync("LOCK TABLE topics IN ACCESS EXCLUSIVE MODE", transaction: erasure);

        var page = _client.GetAsync($"/preferences?token={token}");
        await Eventually.TrueAsync(async () => await database.ScalarAsync<long>(
            "SELECT count(*) FROM pg_locks WHERE relation = 'topics'::regclass AND NOT granted") == 1, "the page to wait for the topics");
        await eraser.ExecuteAsync("DELETE FROM subscribers WHERE id = @id", new { id }, erasure);
        await erasure.CommitAsync();

        Assert.Equal(HttpStatusCode.NotFound, (await page).StatusCode);
    }

    [Fact]
    public async Task PreferencesShowAndSaveTopicsAndTheCap()
    {
        var (id, token) = await AddActiveSubscriberAsync("prefs@example.org", "lidar");

        var page = await _client.GetAsync($"/preferences?token={token}");
        Assert.Equal(HttpStatusCode.OK, page.StatusCode);
        var html = await page.Content.ReadAsStringAsync();
        Assert.Contains("prefs@example.org", html);
        Assert.Contains(">lidar</textarea>", html);
        Assert.Contains("would hold 2 papers", html);

        var saved = await _client.PostFormAsync($"/preferences?token={token}", ("topics", "protein folding\nradar"), ("max_papers", "7"));
        Assert.Equal(HttpStatusCode.OK, saved.StatusCode);
        Assert.Contains("Saved.", await saved.Content.ReadAsStringAsync());
        Assert.Equal(["protein folding", "radar"], await database.QueryAsync<string>(
            "SELECT text FROM topics WHERE subscriber_id = @id ORDER BY position", new { id }));
        Assert.Equal(7, await database.ScalarAsync<int>("SELECT max_papers FROM subscribers WHERE id = @id", new { id }));
    }

    [Fact]
    public async Task InvalidPreferencesChangeNothing()
    {
        var (id, token) = await AddActiveSubscriberAsync("careful@example.org", "lidar");

        var topicsWrong = await _client.PostFormAsync($"/preferences?token={token}", ("topics", "the of"), ("max_papers", "5"));
        var capWrong = await _client.PostFormAsync($"/preferences?token={token}", ("topics", "radar"), ("max_papers", "51"));

        Assert.Equal(HttpStatusCode.BadRequest, topicsWrong.StatusCode);
        Assert.Contains("no word to search for", await topicsWrong.Content.ReadAsStringAsync());
        Assert.Equal(HttpStatusCode.BadRequest, capWrong.StatusCode);
        Assert.Contains("max_papers", await capWrong.Content.ReadAsStringAsync());
        Assert.Equal(["lidar"], await database.QueryAsync<string>("SELECT text FROM topics WHERE subscriber_id = @id", new { id }));
        Assert.Equal(0, await database.ScalarAsync<long>("SELECT count(max_papers) FROM subscribers WHERE id = @id", new { id }));
    }

    [Fact]
    public async Task APreferencesLinkOpensOnlyItsOwnSubscription()
    {
        var (victim, victimKey) = await database.AddSubscriberAsync("victim@example.org", "active", maxPapers: null, "lidar");
        var (_, token) = await AddActiveSubscriberAsync("attacker@example.org", "radar");
        var tokens = _app.Services.GetRequiredService<LinkTokens>();
        var tampered = token[..^2] + (token[^2] == 'A' ? "BA" : "AA");
        // The victim's own links of every other purpose, signed over the right key: only the purpose tells them apart.
        var otherPurposes = new[] { LinkPurpose.Unsubscribe, LinkPurpose.Feed, LinkPurpose.Confirm }.Select(purpose => tokens.Create(purpose, victim, victimKey));
        var paper = await database.ScalarAsync<long>("""
            INSERT INTO papers (paper_key, title, created_at, updated_at) VALUES ('title:a-paper-the-victim-was-sent', 'A paper', now(), now()) RETURNING id
            """);
        await database.ExecuteAsync("""
            INSERT INTO deliveries (subscriber_id, day, papers, status, next_attempt_at, created_at) VALUES (@victim, '2026-11-20', '[]', 'sent', now(), now());
            INSERT INTO delivery_papers (subscriber_id, day, paper_ids) VALUES (@victim, '2026-11-20', ARRAY[@paper]);
            """, new { victim, paper });

        foreach (var bad in new[] { tampered, "x" }.Concat(otherPurposes))
        {
            Assert.Equal(HttpStatusCode.NotFound, (await _client.GetAsync($"/preferences?token={bad}")).StatusCode);
            Assert.Equal(HttpStatusCode.NotFound,
                (await _client.PostFormAsync($"/preferences?token={bad}", ("topics", "hacked"), ("max_papers", "1"))).StatusCode);
            Assert.Equal(HttpStatusCode.NotFound, (await _client.GetAsync($"/preferences/export?token={bad}")).StatusCode);
            Assert.Equal(HttpStatusCode.NotFound, (await _client.PostFormAsync($"/preferences/erase?token={bad}", ("confirm", "yes"))).StatusCode);
            Assert.Equal(HttpStatusCode.NotFound, (await _client.GetAsync($"/feedback?token={bad}&paper={paper}&more=1")).StatusCode);
            Assert.Equal(HttpStatusCode.NotFound, (await _client.PostFormAsync($"/feedback?token={bad}&paper={paper}&more=0")).StatusCode);
        }
        Assert.Equal(["lidar"], await database.QueryAsync<string>("SELECT text FROM topics WHERE subscriber_id = @id", new { id = victim }));
        Assert.Equal(0, await database.ScalarAsync<long>("SELECT count(*) FROM paper_feedback WHERE subscriber_id = @id", new { id = victim }));
        // The victim's own preferences link does open them, and rates the paper: the 404s above are the purpose's.
        var own = tokens.Create(LinkPurpose.Preferences, victim, victimKey);
        Assert.Equal(HttpStatusCode.OK, (await _client.GetAsync($"/preferences/export?token={own}")).StatusCode);
        Assert.Equal(HttpStatusCode.OK, (await _client.GetAsync($"/feedback?token={own}&paper={paper}&more=1")).StatusCode);

        // After unsubscribing, the link shows no preferences any more, only the way to the subscriber's data, and saves nothing.
        await database.ExecuteAsync("UPDATE subscribers SET status = 'unsubscribed' WHERE email = 'attacker@example.org'");
        var unsubscribed = await (await _client.GetAsync($"/preferences?token={token}")).Content.ReadAsStringAsync();
        Assert.Contains("You are unsubscribed", unsubscribed);
        Assert.DoesNotContain("radar", unsubscribed);
        Assert.Equal(HttpStatusCode.NotFound,
            (await _client.PostFormAsync($"/preferences?token={token}", ("topics", "hacked"), ("max_papers", "1"))).StatusCode);
    }

    private async Task<(long Id, string Token)> AddActiveSubscriberAsync(string email, params string[] topics)
    {
        var (id, key) = await database.AddSubscriberAsync(email, "active", maxPapers: null, topics);
        return (id, _app.Services.GetRequiredService<LinkTokens>().Create(LinkPurpose.Preferences, id, key));
    }
}
