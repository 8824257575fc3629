using System.Globalization;
using Microsoft.Extensions.DependencyInjection;
using Subscriptions.Matching;
using Subscriptions.Papers;
using Subscriptions.Tests.Infrastructure;

namespace Subscriptions.Tests;

/// <summary>The topic language by words, ranking and the cap, pinned with papers written for the test, in real PostgreSQL.</summary>
public sealed class TopicMatchingTests(TestDatabase database) : IClassFixture<TestDatabase>, IAsyncLifetime
{
    private static readonly DateOnly Day = new(2026, 10, 1);
    private TestApp _app = null!;

    public async Task InitializeAsync()
    {
        // The word language alone: meaning is pinned by MeaningMatchingTests and JudgedSetTests.
        _app = new TestApp(database, settings: new Dictionary<string, string?> { ["Matching:Semantic"] = "false" });
        await _app.Services.GetRequiredService<PaperStore>().SaveDayAsync(Day, "file", [
            Paper("2610.00001", "Variational Autoencoder Pretraining for Tabular Data", "We pretrain a model on tables.", upvotes: 10),
            Paper("2610.00002", "Décodage spéculatif pour les grands modèles", "Une méthode de décodage rapide.", upvotes: 10),
            Paper("2610.00003", "Monocular Depth Estimation in the Wild", "We estimate depth from one image of outdoor scenes.", upvotes: 10),
            Paper("2610.00004", "Scene Understanding Benchmarks", "An estimation of depth and of surface normals across indoor scenes.", upvotes: 10),
            Paper("2610.00005", "Depth Estimation for Endoscopy", "Depth estimation of tissue during medical procedures.", upvotes: 10),
            Paper("2610.00006", "Lidar Point Cloud Completion", "Completing sparse scans.", upvotes: 10),
            Paper("2610.00007", "Radar Odometry at Night", "Odometry from automotive sensors.", upvotes: 10),
            Paper("2610.00008", "A Survey of Program Synthesis", "We review work on interpretability of code models.", upvotes: 10),
            Paper("2610.00009", "Interpretability of Vision Transformers", "Probing attention heads.", upvotes: 10),
            Paper("2610.00010", "Interpretability at Scale", "Feature attribution for large models.", upvotes: 300),
        ], CancellationToken.None);
    }

    public async Task DisposeAsync() => await _app.DisposeAsync();

    [Theory]
    [InlineData("autoencoders", "2610.00001")] // plural finds singular
    [InlineData("pretrained autoencoding", "2610.00001")] // inflections of both words
    [InlineData("DÉCODAGE", "2610.00002")] // case and accents
    [InlineData("decodage speculatif", "2610.00002")]
    [InlineData("odometry", "2610.00007")]
    public async Task WordsMatchTheirStemsRegardlessOfCaseAndAccents(string topic, string expected) =>
        Assert.Equal([expected], await MatchAsync(topic));

    [Fact]
    public async Task AQuotedPhraseMatchesThoseWordsInThatOrder()
    {
        Assert.Equal(["2610.00003", "2610.00005"], (await MatchAsync("\"depth estimation\"")).Order());
        // Unquoted, the words may be anywhere: the benchmark paper's "estimation of depth" counts.
        Assert.Contains("2610.00004", await MatchAsync("depth estimation"));
    }

    [Fact]
    public async Task OrBetweenTermsMatchesEither() =>
        Assert.Equal(["2610.00006", "2610.00007"], (await MatchAsync("lidar OR radar")).Order());

    [Fact]
    public async Task AMinusExcludesPapersWithTheTerm()
    {
        var matches = await MatchAsync("depth estimation -medical");

        Assert.Contains("2610.00003", matches);
        Assert.DoesNotContain("2610.00005", matches);
    }

    [Fact]
    public async Task ATitleHitRanksAboveAnAbstractOnlyHit()
    {
        var all = await MatchAsync("interpretability");

        Assert.Equal(3, all.Count);
        // 00009 and 00008 both have 10 upvotes; 00009 has the word in its title, 00008 only in its abstract.
        Assert.True(all.IndexOf("2610.00009") < all.IndexOf("2610.00008"));
    }

    [Fact]
    public async Task TheDaysTrendingSignalOrdersEqualMatches()
    {
        var matches = await MatchAsync("interpretability");

        Assert.Equal(["2610.00010", "2610.00009"], matches.Take(2));
    }

    [Fact]
    public async Task SeveralTopicsGetAPaperWhenAnyMatchesAndSayWhich()
    {
        var matcher = _app.Services.GetRequiredService<TopicMatcher>();
        var matches = await matcher.MatchAsync(Day, ["lidar", "radar odometry", "point clouds", "quantum chemistry"], 10, CancellationToken.None);

        var lidar = Assert.Single(matches, m => ArxivId(m) == "2610.00006");
        Assert.Equal(["lidar", "point clouds"], lidar.Topics);
        Assert.Equal(["radar odometry"], Assert.Single(matches, m => ArxivId(m) == "2610.00007").Topics);
        Assert.Equal(2, matches.Count);
    }

    [Fact]
    public async Task TheListIsCutAtTheCap()
    {
        var matcher = _app.Services.GetRequiredService<TopicMatcher>();

        var capped = await matcher.MatchAsync(Day, ["depth", "interpretability", "lidar"], 2, CancellationToken.None);

        Assert.Equal(2, capped.Count);
        Assert.Equal("2610.00010", ArxivId(capped[0]));
    }

    [Fact]
    public async Task ANewerDaysSearchesSupersedeTheOlderOnes()
    {
        var matcher = _app.Services.GetRequiredService<TopicMatcher>();
        DateOnly[] week = [.. Enumerable.Range(-6, 7).Select(Day.AddDays)];
        DateOnly[] nextWeek = [.. week.Select(day => day.AddDays(1))];

        // A day's slots search the day's papers and the week's; the next day's slots, the next ones.
        await matcher.ForDaysAsync([Day], CancellationToken.None);
        await matcher.ForDaysAsync(week, CancellationToken.None);
        Assert.Equal(2, matcher.DaySetsKept);
        await matcher.ForDaysAsync([Day.AddDays(1)], CancellationToken.None);
        await matcher.ForDaysAsync(nextWeek, CancellationToken.None);

        // The searches of the day before (each with every topic its slots searched) were kept until three more days' came.
        Assert.Equal(2, matcher.DaySetsKept);
    }

    [Fact]
    public async Task NoMatchAtAllGivesAnEmptyList() =>
        Assert.Empty(await MatchAsync("protein folding"));

    [Fact]
    public async Task EveryActiveSubscriberGetsTheirOwnCappedListAndTheUnmatchedNone()
    {
        await AddSubscriberAsync("both@example.org", "active", null, "lidar", "interpretability");
        await AddSubscriberAsync("capped@example.org", "active", 1, "interpretability");
        await AddSubscriberAsync("nothing@example.org", "active", null, "protein folding");
        await AddSubscriberAsync("pending@example.org", "pending", null, "lidar");
        await AddSubscriberAsync("gone@example.org", "unsubscribed", null, "lidar");

        var lists = new List<SubscriberMatches>();
        await foreach (var list in _app.Services.GetRequiredService<TopicMatcher>().MatchAllAsync(Day, CancellationToken.None))
        {
            lists.Add(list);
        }

        Assert.Equal(["both@example.org", "capped@example.org"], lists.Select(l => l.Email));
        var both = lists[0];
        Assert.Equal(4, both.Papers.Count);
        Assert.Equal(["interpretability"], both.Papers[0].Topics);
        Assert.Contains(both.Papers, p => p.Topics.SequenceEqual(["lidar"]));
        Assert.Equal(["2610.00010"], lists[1].Papers.Select(ArxivId));
    }

    private async Task<List<string>> MatchAsync(string topic)
    {
        var matches = await _app.Services.GetRequiredService<TopicMatcher>().MatchAsync(Day, [topic], 50, CancellationToken.None);
        return [.. matches.Select(ArxivId)];
    }

    private string ArxivId(PaperMatch match) =>
        database.ScalarAsync<string>("SELECT arxiv_id FROM papers WHERE id = @id", new { id = match.PaperId }).GetAwaiter().GetResult();

    private Task AddSubscriberAsync(string email, string status, int? maxPapers, params string[] topics) =>
        database.AddSubscriberAsync(email, status, maxPapers, topics);

    internal static PaperRecord Paper(string arxivId, string title, string abstractText, int? upvotes) =>
        PaperRecord.Create(arxivId, title, abstractText, ["A. Author"], DateTimeOffset.Parse("2026-09-30T12:00:00Z", CultureInfo.InvariantCulture), upvotes);
}
