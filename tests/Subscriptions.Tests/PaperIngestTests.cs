using System.Net;
using System.Text.Json;
using Microsoft.AspNetCore.Http;
using Microsoft.Extensions.DependencyInjection;
using Subscriptions.Papers;
using Subscriptions.Tests.Infrastructure;

namespace Subscriptions.Tests;

/// <summary>Ingest against a local HTTP server serving recorded payloads and faults, into the real database.</summary>
public sealed class PaperIngestTests(TestDatabase database) : IClassFixture<TestDatabase>
{
    private static readonly string HuggingFaceDay = FakeSourceServer.Payload("huggingface-daily-papers.json");
    private static readonly string ArxivDay = FakeSourceServer.Payload("arxiv-feed.xml");

    [Fact]
    public async Task HuggingFaceDayIsStoredInTrendingOrderAsPlainText()
    {
        await using var source = await FakeSourceServer.StartAsync((context, _) => FakeSourceServer.Json(context, HuggingFaceDay));
        await using var app = AppFor(source);

        var report = Assert.Single(await IngestAsync(app, "2026-11-24", "huggingface"));

        Assert.Equal(new SourceReport("huggingface", 3, 3, 0, 0, [], null), report with { Skipped = [] });
        Assert.Empty(report.Skipped);
        var request = Assert.Single(source.Requests);
        Assert.Equal("/api/daily_papers", request.Path);
        Assert.Equal("?date=2026-11-24&limit=100&p=0", request.Query);

        var papers = await PapersOfDayAsync(app, "2026-11-24");
        Assert.Equal(["2611.03990", "2611.04127", "2611.02555"], papers.Select(p => p.GetProperty("arxivId").GetString()));
        Assert.Equal([88, 57, 12], papers.Select(p => p.GetProperty("upvotes").GetInt32()));
        var depthLens = papers[1];
        Assert.Equal("DepthLens: Metric Depth Estimation & Uncertainty from a Single Image", depthLens.GetProperty("title").GetString());
        Assert.Equal(
            "We present DepthLens, a model that estimates metric depth $d \\in \\mathbb{R}^+$ from a single RGB image <and> reports calibrated uncertainty. It beats prior work on KITTI and NYUv2.",
            depthLens.GetProperty("abstract").GetString());
        Assert.Equal(["Mei Lin", "Jonas Berg", "Anonymous"], depthLens.GetProperty("authors").EnumerateArray().Select(a => a.GetString()));
        Assert.Equal("https://huggingface.co/papers/2611.04127", depthLens.GetProperty("pageUrl").GetString());
        Assert.Equal("https://arxiv.org/pdf/2611.04127", depthLens.GetProperty("pdfUrl").GetString());
        Assert.Equal("https://github.com/example/depthlens", depthLens.GetProperty("githubRepo").GetString());
    }

    [Fact]
    public async Task HuggingFacePagesAreFollowedUntilAShortOne()
    {
        var items = JsonSerializer.Deserialize<JsonElement[]>(HuggingFaceDay)!;
        var pages = new[] { items[..2], items[2..], Array.Empty<JsonElement>() };
        await using var source = await FakeSourceServer.StartAsync((context, _) =>
        {
            var page = int.Parse(context.Request.Query["p"].ToString(), System.Globalization.CultureInfo.InvariantCulture);
            return FakeSourceServer.Json(context, JsonSerializer.Serialize(pages[page]));
        });
        await using var app = AppFor(source, ("Papers:HuggingFace:PageSize", "2"));

        var report = Assert.Single(await IngestAsync(app, "2026-11-10", "huggingface"));

        Assert.Equal(3, report.New);
        Assert.Equal(["?date=2026-11-10&limit=2&p=0", "?date=2026-11-10&limit=2&p=1"], source.Requests.Select(r => r.Query));
    }

    [Fact]
    public async Task ArxivDayIsQueriedByCategoryAndDateAndStored()
    {
        await using var source = await FakeSourceServer.StartAsync((context, _) => FakeSourceServer.Atom(context, ArxivDay));
        await using var app = AppFor(source, ("Papers:Arxiv:Categories", "cs.CL, cs.CV"));

        var report = Assert.Single(await IngestAsync(app, "2026-11-11", "arxiv"));

        Assert.Equal((2, 2, 0), (report.Fetched, report.New, report.Skipped.Count));
        var request = Assert.Single(source.Requests);
        Assert.Equal("/api/query", request.Path);
        Assert.Contains("search_query=(cat:cs.CL OR cat:cs.CV) AND submittedDate:[202611110000 TO 202611112359]", request.Query);
        Assert.Contains("sortBy=submittedDate&sortOrder=descending&start=0&max_results=100", request.Query);

        var papers = await PapersOfDayAsync(app, "2026-11-11");
        Assert.Equal(["2611.04501", "2611.04127"], papers.Select(p => p.GetProperty("arxivId").GetString()));
        Assert.Equal("Retrieval-Augmented Generation for Low-Resource Machine Translation", papers[0].GetProperty("title").GetString());
        Assert.Equal("We study retrieval-augmented generation for translating between low-resource languages, and show gains of 4 BLEU on FLORES-200.",
            papers[0].GetProperty("abstract").GetString());
        Assert.Equal("http://arxiv.org/abs/2611.04501v1", papers[0].GetProperty("pageUrl").GetString());
        Assert.Equal(JsonValueKind.Null, papers[0].GetProperty("upvotes").ValueKind);
    }

    [Fact]
    public async Task ArxivPagesAreFetchedWithAPauseBetweenCalls()
    {
        await using var source = await FakeSourceServer.StartAsync((context, call) =>
        {
            // Two pages of one entry each, out of a total of two.
            var document = System.Xml.Linq.XDocument.Parse(ArxivDay);
            var entries = document.Root!.Elements().Where(e => e.Name.LocalName == "entry").ToList();
            entries[call == 1 ? 1 : 0].Remove();
            return FakeSourceServer.Atom(context, document.ToString());
        });
        await using var app = AppFor(source, ("Papers:Arxiv:PageSize", "1"), ("Papers:Arxiv:RequestInterval", "00:00:00.400"));

        var report = Assert.Single(await IngestAsync(app, "2026-11-12", "arxiv"));

        Assert.Equal(2, report.New);
        Assert.Equal(2, source.Requests.Count);
        Assert.Contains("start=1&max_results=1", source.Requests[1].Query);
        Assert.True(source.Requests[1].At - source.Requests[0].At >= TimeSpan.FromMilliseconds(380),
            $"Calls were {(source.Requests[1].At - source.Requests[0].At).TotalMilliseconds} ms apart");
    }

    [Fact]
    public async Task AServiceUnavailableIsRetriedOnce()
    {
        await using var source = await FakeSourceServer.StartAsync((context, call) =>
            call == 1 ? FakeSourceServer.Status(context, 503) : FakeSourceServer.Json(context, HuggingFaceDay));
        await using var app = AppFor(source);

        var report = Assert.Single(await IngestAsync(app, "2026-11-13", "huggingface"));

        Assert.Null(report.Error);
        Assert.Equal(3, report.New);
        Assert.Equal(2, source.Requests.Count);
    }

    [Fact]
    public async Task TooManyRequestsWaitsAsLongAsRetryAfterSays()
    {
        await using var source = await FakeSourceServer.StartAsync((context, call) =>
            call == 1 ? FakeSourceServer.Status(context, 429, retryAfter: "1") : FakeSourceServer.Json(context, HuggingFaceDay));
        await using var app = AppFor(source);

        var report = Assert.Single(await IngestAsync(app, "2026-11-14", "huggingface"));

        Assert.Equal(3, report.New);
        Assert.Equal(2, source.Requests.Count);
        // The configured retry delay is 10 ms; the server asked for a second.
        Assert.True(source.Requests[1].At - source.Requests[0].At >= TimeSpan.FromMilliseconds(950),
            $"Retried after {(source.Requests[1].At - source.Requests[0].At).TotalMilliseconds} ms");
    }

    [Fact]
    public async Task ARequestThatHangsTimesOutAndIsRetried()
    {
        await using var source = await FakeSourceServer.StartAsync(async (context, call) =>
        {
            if (call == 1)
            {
                await Task.Delay(TimeSpan.FromSeconds(10), context.RequestAborted).ContinueWith(_ => { }, TaskScheduler.Default);
                return;
            }
            await FakeSourceServer.Json(context, HuggingFaceDay);
        });
        await using var app = AppFor(source, ("Papers:Http:Timeout", "00:00:02"));

        var report = Assert.Single(await IngestAsync(app, "2026-11-15", "huggingface"));

        Assert.Null(report.Error);
        Assert.Equal(3, report.New);
        Assert.Equal(2, source.Requests.Count);
    }

    [Theory]
    [InlineData("stalls", "2026-11-08")]
    [InlineData("breaks off", "2026-11-07")]
    public async Task ABodyThatStallsOrBreaksOffIsTimedOutAndRetried(string fault, string day)
    {
        // The headers come at once; the body was read after the resilience pipeline had returned, so a stalled one hung the
        // ingest (and the daily job) until shutdown, and a broken one failed the source without a retry.
        await using var source = await FakeSourceServer.StartAsync(async (context, call) =>
        {
            if (call == 1)
            {
                context.Response.ContentType = "application/json";
                context.Response.ContentLength = 5_000;
                await context.Response.WriteAsync("[{\"paper\":", context.RequestAborted);
                await context.Response.Body.FlushAsync(context.RequestAborted);
                // Long enough for the client to have the headers; then the body stalls, or the connection drops mid-body.
                await Task.Delay(TimeSpan.FromSeconds(fault == "stalls" ? 20 : 0.3), context.RequestAborted).ContinueWith(_ => { }, TaskScheduler.Default);
                context.Abort();
                return;
            }
            await FakeSourceServer.Json(context, HuggingFaceDay);
        });
        await using var app = AppFor(source, ("Papers:Http:Timeout", "00:00:02"));

        var report = Assert.Single(await IngestAsync(app, day, "huggingface"));

        Assert.Null(report.Error);
        Assert.Equal(3, report.Fetched);
        Assert.Equal(3, (await PapersOfDayAsync(app, day)).Count);
        Assert.Equal(2, source.Requests.Count);
    }

    [Fact]
    public async Task ABodyLargerThanAnyTakenFailsTheSourceAtOnce()
    {
        // Read within the attempt, a body over the limit was a transient failure: fetched again and again, and counted
        // towards opening the source's circuit.
        await using var source = await FakeSourceServer.StartAsync(async (context, _) =>
        {
            context.Response.ContentType = "application/json";
            context.Response.ContentLength = 100L * 1024 * 1024;
            await context.Response.Body.FlushAsync(context.RequestAborted);
        });
        await using var app = AppFor(source, ("Papers:Http:Retries", "3"));

        var report = Assert.Single(await IngestAsync(app, "2026-11-06", "huggingface"));

        Assert.True(report.Failed);
        Assert.Contains("the largest body taken is 67,108,864", report.Error);
        Assert.Single(source.Requests);
    }

    [Fact]
    public async Task ASourceDownForGoodFailsAloneAndTheOthersLand()
    {
        await using var source = await FakeSourceServer.StartAsync((context, _) => context.Request.Path.StartsWithSegments("/api/daily_papers")
            ? FakeSourceServer.Status(context, 503)
            : FakeSourceServer.Atom(context, ArxivDay));
        await using var app = AppFor(source, ("Papers:Http:Retries", "5"));

        var reports = await IngestAsync(app, "2026-11-16", "huggingface", "arxiv");

        var huggingFace = reports.Single(r => r.Source == "huggingface");
        Assert.True(huggingFace.Failed);
        Assert.Contains("circuit open", huggingFace.Error);
        // The circuit breaker stopped the retries after three failures instead of making all six attempts.
        Assert.Equal(3, source.Requests.Count(r => r.Path == "/api/daily_papers"));
        var arxiv = reports.Single(r => r.Source == "arxiv");
        Assert.Null(arxiv.Error);
        Assert.Equal(2, arxiv.New);
        Assert.Equal(2, (await PapersOfDayAsync(app, "2026-11-16")).Count);
    }

    [Fact]
    public async Task MalformedRecordsAreSkippedAndNamedWhileTheGoodOnesLand()
    {
        var items = JsonSerializer.Deserialize<JsonElement[]>(HuggingFaceDay)!;
        var hugeAbstract = new string('x', 1024 * 1024);
        var payload = $$"""
            [
              {{items[0].GetRawText()}},
              { "paper": { "summary": "Neither an id nor a title", "upvotes": 3 } },
              { "paper": { "id": "2611.00001", "title": "Upvotes as text", "upvotes": "many" } },
              { "paper": { "id": "2611.00002", "title": "A huge abstract", "summary": "{{hugeAbstract}}" } },
              42,
              { "paper": "2611.00003" },
              { "paper": { "id": "2611.00004", "title": "Authors as text", "authors": "Ada Lovelace" } },
              { "paper": { "id": "not an id", "title": "A bad id" } },
              {{items[1].GetRawText()}}
            ]
            """;
        await using var source = await FakeSourceServer.StartAsync((context, _) => FakeSourceServer.Json(context, payload));
        await using var app = AppFor(source);

        var report = Assert.Single(await IngestAsync(app, "2026-11-17", "huggingface"));

        Assert.Null(report.Error);
        Assert.Equal(9, report.Fetched);
        Assert.Equal(2, report.New);
        Assert.Equal(7, report.Skipped.Count);
        Assert.Contains(report.Skipped, s => s.StartsWith("item 2:", StringComparison.Ordinal) && s.Contains("neither an arXiv id nor a title"));
        Assert.Contains(report.Skipped, s => s.StartsWith("item 3 (2611.00001):", StringComparison.Ordinal) && s.Contains("\"upvotes\" is a string"));
        Assert.Contains(report.Skipped, s => s.StartsWith("item 4 (2611.00002):", StringComparison.Ordinal) && s.Contains("abstract is 1,048,576 characters"));
        Assert.Contains(report.Skipped, s => s.StartsWith("item 5:", StringComparison.Ordinal) && s.Contains("the number 42"));
        Assert.Contains(report.Skipped, s => s.StartsWith("item 6:", StringComparison.Ordinal) && s.Contains("\"paper\" is a string"));
        Assert.Contains(report.Skipped, s => s.StartsWith("item 7 (2611.00004):", StringComparison.Ordinal) && s.Contains("\"authors\" is a string"));
        Assert.Contains(report.Skipped, s => s.StartsWith("item 8 (not an id):", StringComparison.Ordinal) && s.Contains("not an arXiv id"));
        Assert.Equal(["2611.03990", "2611.04127"], (await PapersOfDayAsync(app, "2026-11-17")).Select(p => p.GetProperty("arxivId").GetString()));
    }

    [Fact]
    public async Task CharactersNoTextOfOursCanHoldAreLeftOutAndHalfASurrogateSkipsItsItem()
    {
        // A NUL (escaped, or as an entity) made PostgreSQL refuse the whole day, and the ingest fail; a control character
        // made every feed carrying the paper answer 500; half a surrogate pair made the ingest throw.
        const string payload = """
            [
              { "paper": { "id": "2611.00011", "title": "Nul &#0; as an entity", "summary": "Nul \u0000 escaped, \u0001 a control, \uFFFF a noncharacter" } },
              { "paper": { "id": "2611.00012", "title": "Half \ud800 a pair" } },
              { "paper": { "id": "\u001b[2J2611", "title": "An id that clears the screen" } },
              { "paper": { "id": "2611.00013", "title": "A whole pair \ud83d\ude00 stays" } }
            ]
            """;
        await using var source = await FakeSourceServer.StartAsync((context, _) => FakeSourceServer.Json(context, payload));
        await using var app = AppFor(source);

        var report = Assert.Single(await IngestAsync(app, "2026-11-09", "huggingface"));

        Assert.Null(report.Error);
        Assert.Equal(2, report.New);
        Assert.Contains(report.Skipped, s => s.StartsWith("item 2 (2611.00012):", StringComparison.Ordinal) && s.Contains("\"title\" holds half a surrogate pair"));
        Assert.Contains(report.Skipped, s => s.StartsWith("item 3 ([2J2611):", StringComparison.Ordinal) && s.Contains("\"[2J2611\" is not an arXiv id"));
        Assert.DoesNotContain(report.Skipped, s => s.Any(char.IsControl));
        var papers = await PapersOfDayAsync(app, "2026-11-09");
        Assert.Equal(["Nul as an entity", "A whole pair 😀 stays"], papers.Select(p => p.GetProperty("title").GetString()));
        Assert.Equal("Nul escaped, a control, a noncharacter", papers[0].GetProperty("abstract").GetString());
    }

    [Theory]
    [InlineData("huggingface", "text/html", "<!DOCTYPE html><html><body>Service maintenance</body></html>", "not JSON")]
    [InlineData("huggingface", "application/json", "{\"error\": \"Invalid date\"}", "expected a JSON array")]
    [InlineData("arxiv", "text/html", "<!DOCTYPE html><html><body>Rate exceeded.", "not XML")]
    [InlineData("arxiv", "application/json", "[]", "not XML")]
    public async Task ABodyInTheWrongFormatFailsTheFetchClearly(string sourceName, string contentType, string body, string expected)
    {
        await using var source = await FakeSourceServer.StartAsync((context, _) => FakeSourceServer.Body(context, contentType, body));
        await using var app = AppFor(source);

        var report = Assert.Single(await IngestAsync(app, "2026-11-18", sourceName));

        Assert.True(report.Failed);
        Assert.Contains(expected, report.Error);
        Assert.Empty(await PapersOfDayAsync(app, "2026-11-18"));
    }

    [Fact]
    public async Task IngestingTheSameDayTwiceChangesNothingAndLaterUpvotesAreUpdated()
    {
        var payload = HuggingFaceDay;
        await using var source = await FakeSourceServer.StartAsync((context, _) => FakeSourceServer.Json(context, payload));
        await using var app = AppFor(source);

        await IngestAsync(app, "2026-11-19", "huggingface");
        var papersBefore = await database.ScalarAsync<long>("SELECT count(*) FROM papers");
        var again = Assert.Single(await IngestAsync(app, "2026-11-19", "huggingface"));
        Assert.Equal((0, 0, 3), (again.New, again.Updated, again.Unchanged));
        Assert.Equal(papersBefore, await database.ScalarAsync<long>("SELECT count(*) FROM papers"));

        payload = HuggingFaceDay.Replace("\"upvotes\": 12", "\"upvotes\": 15", StringComparison.Ordinal);
        var later = Assert.Single(await IngestAsync(app, "2026-11-19", "huggingface"));
        Assert.Equal((0, 1, 2), (later.New, later.Updated, later.Unchanged));
        Assert.Equal(15, (await PapersOfDayAsync(app, "2026-11-19"))[2].GetProperty("upvotes").GetInt32());

        // Overtaking the others moves every paper's rank.
        payload = HuggingFaceDay.Replace("\"upvotes\": 12", "\"upvotes\": 120", StringComparison.Ordinal);
        var overtaken = Assert.Single(await IngestAsync(app, "2026-11-19", "huggingface"));
        Assert.Equal((0, 3, 0), (overtaken.New, overtaken.Updated, overtaken.Unchanged));
        var papers = await PapersOfDayAsync(app, "2026-11-19");
        Assert.Equal("2611.02555", papers[0].GetProperty("arxivId").GetString());
        Assert.Equal(120, papers[0].GetProperty("upvotes").GetInt32());
    }

    [Fact]
    public async Task APaperTrendingOnSeveralDaysIsStoredOnce()
    {
        await using var source = await FakeSourceServer.StartAsync((context, _) => FakeSourceServer.Json(context, HuggingFaceDay));
        await using var app = AppFor(source);

        await IngestAsync(app, "2026-11-20", "huggingface");
        var second = Assert.Single(await IngestAsync(app, "2026-11-21", "huggingface"));

        Assert.Equal(3, second.New);
        Assert.Equal(1, await database.ScalarAsync<long>("SELECT count(*) FROM papers WHERE arxiv_id = '2611.03990'"));
        Assert.Equal(2, await database.ScalarAsync<long>(
            "SELECT count(*) FROM paper_days d JOIN papers p ON p.id = d.paper_id WHERE p.arxiv_id = '2611.03990' AND d.day IN ('2026-11-20', '2026-11-21')"));
    }

    [Fact]
    public async Task APlainTextPageIsReadTitleThenAbstract()
    {
        var file = Path.Combine(Path.GetTempPath(), $"page-{Guid.NewGuid():N}.txt");
        await File.WriteAllTextAsync(file, FakeSourceServer.Payload("trending-page.txt") + "A stray line with no abstract after it\n");
        await using var source = await FakeSourceServer.StartAsync((context, _) => FakeSourceServer.Status(context, 404));
        await using var app = AppFor(source);
        try
        {
            var report = Assert.Single(await app.Services.GetRequiredService<PaperIngest>().IngestAsync(
                DateOnly.Parse("2026-11-22", System.Globalization.CultureInfo.InvariantCulture), ["file"], file, CancellationToken.None));

            Assert.Equal(3, report.New);
            Assert.Contains(report.Skipped, s => s.Contains("A stray line", StringComparison.Ordinal));
            var papers = await PapersOfDayAsync(app, "2026-11-22");
            Assert.Equal(
                ["Tiny Recursive Reasoners", "Vision-Language Models & Spatial Reasoning: A Benchmark", "Diffusion Policies for Dexterous Manipulation"],
                papers.Select(p => p.GetProperty("title").GetString()));
            Assert.StartsWith("We introduce a benchmark of 12,000 questions", papers[1].GetProperty("abstract").GetString(), StringComparison.Ordinal);
            Assert.Equal(JsonValueKind.Null, papers[0].GetProperty("arxivId").ValueKind);
            Assert.Empty(source.Requests);
        }
        finally
        {
            File.Delete(file);
        }
    }

    [Fact]
    public async Task TheDayOfPapersNeedsAValidDate()
    {
        await using var source = await FakeSourceServer.StartAsync((context, _) => FakeSourceServer.Status(context, 404));
        await using var app = AppFor(source);
        using var client = app.CreatePlainClient();

        foreach (var url in new[] { "/api/papers", "/api/papers?date=yesterday", "/api/papers?date=2026-13-01" })
        {
            var response = await client.GetAsync(url);
            Assert.Equal(HttpStatusCode.BadRequest, response.StatusCode);
            Assert.Equal("application/problem+json", response.Content.Headers.ContentType?.MediaType);
            Assert.True((await response.ReadJsonAsync()).GetProperty("errors").TryGetProperty("date", out _));
        }
        var empty = await client.GetAsync("/api/papers?date=1999-01-01");
        Assert.Equal(0, (await empty.ReadJsonAsync()).GetProperty("count").GetInt32());
    }

    private TestApp AppFor(FakeSourceServer source, params (string Key, string Value)[] settings)
    {
        var all = new Dictionary<string, string?>
        {
            ["Papers:HuggingFace:BaseUrl"] = source.BaseUrl,
            ["Papers:Arxiv:BaseUrl"] = source.BaseUrl + "/api/query",
            ["Papers:Arxiv:RequestInterval"] = "00:00:00.010",
            ["Papers:Http:RetryDelay"] = "00:00:00.010",
            ["Papers:Http:Timeout"] = "00:00:05",
        };
        foreach (var (key, value) in settings)
        {
            all[key] = value;
        }
        return new TestApp(database, settings: all);
    }

    private static async Task<IReadOnlyList<SourceReport>> IngestAsync(TestApp app, string day, params string[] sources) =>
        await app.Services.GetRequiredService<PaperIngest>().IngestAsync(
            DateOnly.Parse(day, System.Globalization.CultureInfo.InvariantCulture), sources, file: null, CancellationToken.None);

    private static async Task<IReadOnlyList<JsonElement>> PapersOfDayAsync(TestApp app, string day)
    {
        using var client = app.CreatePlainClient();
        var response = await client.GetAsync($"/api/papers?date={day}");
        Assert.Equal(HttpStatusCode.OK, response.StatusCode);
        return [.. (await response.ReadJsonAsync()).GetProperty("papers").EnumerateArray()];
    }
}
