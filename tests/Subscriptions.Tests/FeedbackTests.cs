using System.Net;
using Dapper;
using Microsoft.Extensions.DependencyInjection;
using Subscriptions.Matching;
using Subscriptions.Papers;
using Subscriptions.Subscribers;
using Subscriptions.Tests.Infrastructure;

namespace Subscriptions.Tests;

/// <summary>"More/less like this": the links ask before they act, the ranking of later days follows them, and the preferences page lists and removes them.</summary>
public sealed class FeedbackTests(TestDatabase database) : IClassFixture<TestDatabase>, IAsyncLifetime
{
    private static readonly DateOnly Yesterday = new(2026, 11, 5);
    private static readonly DateOnly Today = new(2026, 11, 6);
    private TestApp _app = null!;
    private HttpClient _client = null!;

    public async Task InitializeAsync()
    {
        var fixture = TextPageFormat.Parse(FakeSourceServer.Payload("trending-papers-day.txt")).Papers.ToDictionary(paper => paper.Title);
        PaperRecord Paper(string id, string title) =>
            PaperRecord.Create(id, title, fixture[title].Abstract, ["José Núñez"], null, upvotes: 10);

        // Yesterday's email carried a depth paper and a hallucination paper; today has two of each kind and two others,
        // all by one author, so that a topic naming the author matches them all equally.
        await database.SaveDayAsync(Yesterday,
            Paper("2611.10001", "Depth Anything: Unleashing the Power of Large-Scale Unlabeled Data"),
            Paper("2611.10002", "Do I Know This Entity? Knowledge Awareness and Hallucinations in Language Models"));
        await database.SaveDayAsync(Today,
            Paper("2611.20001", "GazeSearch: Radiology Findings Search Benchmark"),
            Paper("2611.20002", "VDGD: Mitigating LVLM Hallucinations in Cognitive Prompts by Bridging the Visual Perception Gap"),
            Paper("2611.20003", "The Fourth Monocular Depth Estimation Challenge"),
            Paper("2611.20004", "The Consciousness Prior"),
            Paper("2611.20005", "Do Language Models Know When They're Hallucinating References?"),
            Paper("2611.20006", "EDADepth: Enhanced Data Augmentation for Monocular Depth Estimation"));
        _app = new TestApp(database);
        _client = _app.CreatePlainClient();
    }

    public async Task DisposeAsync()
    {
        _client.Dispose();
        await _app.DisposeAsync();
    }

    [Fact]
    public async Task ALikedPapersNeighboursRiseAndADislikedOnesFall()
    {
        var (id, key) = await database.AddSubscriberAsync("steer@example.org", "active", 10, "author:\"José Núñez\"");
        await ReceivedYesterdayAsync(id);
        var before = await TodaysRanksAsync(id);

        await RateAsync(id, key, "2611.10001", more: true);
        await RateAsync(id, key, "2611.10002", more: false);
        var after = await TodaysRanksAsync(id);

        // Before: all equal, in id order. After: the depth papers first, the hallucination papers last.
        Assert.Equal(["2611.20001", "2611.20002", "2611.20003", "2611.20004", "2611.20005", "2611.20006"], before);
        Assert.Equal(["2611.20003", "2611.20006"], after.Take(2).Order());
        Assert.Equal(["2611.20002", "2611.20005"], after.TakeLast(2).Order());
    }

    [Fact]
    public async Task TheLinkShowsAButtonAndOnlyThePostRecordsIt()
    {
        var (id, key) = await database.AddSubscriberAsync("asks@example.org", "active", null, "depth");
        await ReceivedYesterdayAsync(id);
        var link = FeedbackLink(id, key, await PaperIdAsync("2611.10001"), more: true);

        var page = await _client.GetAsync(link);
        Assert.Equal(HttpStatusCode.OK, page.StatusCode);
        var html = await page.Content.ReadAsStringAsync();
        Assert.Contains("Show more papers like", html);
        Assert.Contains("<form method=\"post\"", html);
        Assert.Equal(0L, await database.ScalarAsync<long>("SELECT count(*) FROM paper_feedback WHERE subscriber_id = @id", new { id }));

        var posted = await _client.PostAsync(link, null);
        Assert.Equal(HttpStatusCode.OK, posted.StatusCode);
        Assert.Contains("will rank higher", await posted.Content.ReadAsStringAsync());
        Assert.True(await database.ScalarAsync<bool>("SELECT liked FROM paper_feedback WHERE subscriber_id = @id", new { id }));
    }

    [Fact]
    public async Task ThePreferencesPageListsRatedPapersAndRemovesOne()
    {
        var (id, key) = await database.AddSubscriberAsync("lists@example.org", "active", null, "depth");
        await ReceivedYesterdayAsync(id);
        await RateAsync(id, key, "2611.10001", more: true);
        await RateAsync(id, key, "2611.10002", more: false);
        var token = _app.Services.GetRequiredService<LinkTokens>().Create(LinkPurpose.Preferences, id, key);

        var html = await _client.GetStringAsync($"/preferences?token={token}");
        Assert.Contains("More like <strong>Depth Anything: Unleashing the Power of Large-Scale Unlabeled Data</strong>", html);
        Assert.Contains("Less like <strong>Do I Know This Entity?", html);

        var removed = await _client.PostAsync($"/feedback?token={token}&paper={await PaperIdAsync("2611.10002")}&remove=1", null);
        Assert.Equal(HttpStatusCode.OK, removed.StatusCode);
        Assert.DoesNotContain("Do I Know This Entity?", await removed.Content.ReadAsStringAsync());
        Assert.Equal(1L, await database.ScalarAsync<long>("SELECT count(*) FROM paper_feedback WHERE subscriber_id = @id", new { id }));
    }

    [Fact]
    public void AFeedbackLinkIsPrintedAsItsUriPrintsItself()
    {
        var tokens = new LinkTokens(Microsoft.Extensions.Options.Options.Create(
            new AppOptions { BaseUrl = "HTTP://Papers.EXAMPLE:80/digest/", TokenSecret = "a-secret-for-the-feedback-link-test-only" }));
        var link = tokens.FeedbackLink(tokens.Create(LinkPurpose.Preferences, 42, LinkTokens.NewNonce()), 1234, more: false);

        Assert.StartsWith("http://papers.example/digest/feedback?token=", link, StringComparison.Ordinal);
        Assert.EndsWith("&paper=1234&more=0", link, StringComparison.Ordinal);
        Assert.Equal(new Uri(link).AbsoluteUri, link);
    }

    [Fact]
    public async Task AForgedOrUnknownFeedbackLinkChangesNothing()
    {
        var (id, key) = await database.AddSubscriberAsync("forged@example.org", "active", null, "depth");
        await ReceivedYesterdayAsync(id);
        var paper = await PaperIdAsync("2611.10001");

        Assert.Equal(HttpStatusCode.NotFound, (await _client.PostAsync($"/feedback?token=AAAA&paper={paper}&more=1", null)).StatusCode);
        Assert.Equal(HttpStatusCode.NotFound, (await _client.PostAsync(FeedbackLink(id, key, 999_999, more: true), null)).StatusCode);
        // A paper never sent to them: any number of ratings of any paper each cost the subscriber's ranking at every slot.
        var notSent = FeedbackLink(id, key, await PaperIdAsync("2611.20001"), more: true);
        Assert.Equal([HttpStatusCode.NotFound, HttpStatusCode.NotFound], [(await _client.GetAsync(notSent)).StatusCode, (await _client.PostAsync(notSent, null)).StatusCode]);
        Assert.Equal(HttpStatusCode.NotFound, (await _client.GetAsync(FeedbackLink(id, key, paper, more: true).Replace("more=1", "more=7", StringComparison.Ordinal))).StatusCode);
        Assert.Equal(0L, await database.ScalarAsync<long>("SELECT count(*) FROM paper_feedback WHERE subscriber_id = @id", new { id }));
    }

    [Fact]
    public async Task ARatingPostedWhileItsSubscriberIsErasedIsTheUnknownLinkPage()
    {
        var (id, key) = await database.AddSubscriberAsync("erased-meanwhile@example.org", "active", null, "depth");
        await ReceivedYesterdayAsync(id);
        var link = FeedbackLink(id, key, await PaperIdAsync("2611.10001"), more: true);
        await using var connection = await database.DataSource.OpenConnectionAsync();
        await using var erasing = await connection.BeginTransactionAsync();
        await connection.ExecuteAsync("DELETE FROM subscribers WHERE id = @id", new { id }, erasing);

        // The link still finds the subscriber (the erasure is not committed); its insert waits on the row, then finds it gone.
        var rating = _client.PostAsync(link, null);
        await Eventually.TrueAsync(() => database.ScalarAsync<bool>(
                "SELECT EXISTS (SELECT 1 FROM pg_stat_activity WHERE datname = current_database() AND wait_event_type = 'Lock' AND query LIKE 'INSERT INTO paper_feedback%')"),
            "the rating to wait for the erasure");
        await erasing.CommitAsync();
        var response = await rating;

        Assert.Equal(HttpStatusCode.NotFound, response.StatusCode);
        Assert.Equal(0L, await database.ScalarAsync<long>("SELECT count(*) FROM paper_feedback WHERE subscriber_id = @id", new { id }));
    }

    private async Task<List<string>> TodaysRanksAsync(long subscriberId)
    {
        var matcher = _app.Services.GetRequiredService<TopicMatcher>();
        var arxivIds = (await database.QueryAsync<(long Id, string ArxivId)>("SELECT id, arxiv_id FROM papers")).ToDictionary(row => row.Id, row => row.ArxivId);
        await foreach (var list in matcher.MatchAllAsync(Today, CancellationToken.None))
        {
            if (list.SubscriberId == subscriberId)
            {
                return [.. list.Papers.Select(paper => arxivIds[paper.PaperId])];
            }
        }
        return [];
    }

    private async Task RateAsync(long subscriberId, byte[] key, string arxivId, bool more)
    {
        var response = await _client.PostAsync(FeedbackLink(subscriberId, key, await PaperIdAsync(arxivId), more), null);
        Assert.Equal(HttpStatusCode.OK, response.StatusCode);
    }

    private string FeedbackLink(long subscriberId, byte[] key, long paperId, bool more)
    {
        var tokens = _app.Services.GetRequiredService<LinkTokens>();
        return new Uri(tokens.FeedbackLink(tokens.Create(LinkPurpose.Preferences, subscriberId, key), paperId, more)).PathAndQuery;
    }

    /// <summary>Yesterday's email: its two papers, as planning records them for the subscriber.</summary>
    private Task ReceivedYesterdayAsync(long subscriberId) => database.ExecuteAsync("""
        INSERT INTO delivery_papers (subscriber_id, day, paper_ids)
        SELECT @subscriberId, @day, array_agg(id) FROM papers WHERE arxiv_id IN ('2611.10001', '2611.10002')
        """, new { subscriberId, day = Yesterday });

    private Task<long> PaperIdAsync(string arxivId) => database.ScalarAsync<long>("SELECT id FROM papers WHERE arxiv_id = @arxivId", new { arxivId });
}
