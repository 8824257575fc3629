using System.Net;
using System.Net.Sockets;
using System.Text;
using System.Text.Json;
using Microsoft.Extensions.DependencyInjection;
using Subscriptions.Subscribers;
using Subscriptions.Tests.Infrastructure;

namespace Subscriptions.Tests;

/// <summary>
/// Hostile and malformed requests against a real Kestrel server: every one is answered 4xx (or 2xx where
/// it is harmless), never 5xx, never with a stack trace; limits hold on the bytes read, however sent.
/// </summary>
public sealed class HostileRequestTests(TestDatabase database) : IClassFixture<TestDatabase>, IAsyncLifetime
{
    private TestApp _app = null!;
    private HttpClient _client = null!;
    private Uri _address = null!;

    public async Task InitializeAsync()
    {
        _app = new TestApp(database, settings: new Dictionary<string, string?> { ["App:PreviewsPerMinute"] = "100000", ["Bounces:WebhookSecret"] = "a-webhook-secret-for-hostile-tests" });
        _address = _app.StartOnKestrel();
        _client = new HttpClient { BaseAddress = _address, Timeout = TimeSpan.FromSeconds(60) };
        await Task.CompletedTask;
    }

    public async Task DisposeAsync()
    {
        _client.Dispose();
        await _app.DisposeAsync();
    }

    [Fact]
    public async Task EveryBodyOfTheCorpusOnEveryPostEndpointIsAnsweredWithoutA5xx()
    {
        var (id, key) = await database.AddSubscriberAsync("victim@example.org", "active", maxPapers: null, "graph neural networks");
        var tokens = _app.Services.GetRequiredService<LinkTokens>();
        string[] endpoints =
        [
            "/subscriptions",
            $"/preferences?token={tokens.Create(LinkPurpose.Preferences, id, key)}",
            "/preferences?token=garbage",
            "/unsubscribe?token=garbage",
            "/unsubscribe",
            "/webhooks/bounces",
        ];

        var failures = new List<string>();
        foreach (var body in Corpus.Bodies)
        {
            foreach (var endpoint in endpoints)
            {
                foreach (var chunked in new[] { false, true })
                {
                    var answer = await RawHttp.SendAsync(_address, "POST", endpoint, body.ContentType, body.Bytes, chunked, accept: "text/html");
                    Check(answer, $"{body.Name} → POST {endpoint[..Math.Min(endpoint.Length, 30)]}{(chunked ? " chunked" : "")}", failures);
                }
            }
        }

        Assert.Empty(failures);
        Assert.Equal("active", await database.SubscriberStatusAsync("victim@example.org"));
    }

    [Fact]
    public async Task EveryQueryValueOfTheCorpusOnEveryGetEndpointIsAnsweredWithoutA5xx()
    {
        var (id, key) = await database.AddSubscriberAsync("reader@example.org", "active", maxPapers: null, "graph neural networks");
        var preferences = _app.Services.GetRequiredService<LinkTokens>().Create(LinkPurpose.Preferences, id, key);
        string[] templates =
        [
            "/api/preview?topics={0}", "/api/preview?topics=graph&date={0}", "/api/papers?date={0}",
            "/subscriptions/confirm?token={0}", "/unsubscribe?token={0}", "/preferences?token={0}",
            "/?preview=1&email={0}&topics={0}", $"/preferences?token={preferences}&preview=1&topics={{0}}&max_papers={{0}}",
            "/feed?token={0}", "/papers/{0}", "/preferences/export?token={0}",
        ];

        var failures = new List<string>();
        foreach (var value in Corpus.QueryValues)
        {
            foreach (var template in templates)
            {
                var url = string.Format(System.Globalization.CultureInfo.InvariantCulture, template, value.Replace(" ", "%20", StringComparison.Ordinal));
                var answer = await RawHttp.SendAsync(_address, "GET", url, null, []);
                Check(answer, $"GET {url[..Math.Min(url.Length, 60)]}", failures);
            }
        }
        Assert.Empty(failures);
    }

    [Fact]
    public async Task ChunkedBodiesOverTheLimitGet413WithAShortProblem()
    {
        var (id, key) = await database.AddSubscriberAsync("chunked@example.org", "active", maxPapers: null, "lidar");
        var token = _app.Services.GetRequiredService<LinkTokens>().Create(LinkPurpose.Preferences, id, key);

        var form = await PostChunkedAsync($"/preferences?token={token}", "application/x-www-form-urlencoded",
            Encoding.ASCII.GetBytes("max_papers=5&topics=" + new string('a', 3_000_000)));
        var multipart = await PostChunkedAsync($"/preferences?token={token}", "multipart/form-data; boundary=XyZ",
            Encoding.ASCII.GetBytes("--XyZ\r\nContent-Disposition: form-data; name=\"topics\"; filename=\"t\"\r\n\r\n" + new string('a', 25_000_000) + "\r\n--XyZ--\r\n"));
        var signup = await PostChunkedAsync("/subscriptions", "application/json",
            Encoding.ASCII.GetBytes("{\"email\":\"chunked@example.org\",\"topics\":[\"" + new string('a', 20_000) + "\"]}"));
        var webhook = await PostChunkedAsync("/webhooks/bounces", "application/json",
            Encoding.ASCII.GetBytes("{\"type\":\"complaint\",\"email\":\"chunked@example.org\",\"padding\":\"" + new string('a', 20_000) + "\"}"));

        foreach (var answer in new[] { form, multipart, signup, webhook })
        {
            Assert.Equal(413, answer.Status);
            Assert.Contains("application/problem+json", answer.Head);
            Assert.True(answer.Body.Length < 2048, $"a short answer, not the input echoed: {answer.Body.Length} bytes");
        }
        Assert.Equal(["lidar"], await database.QueryAsync<string>("SELECT text FROM topics WHERE subscriber_id = @id", new { id }));
    }

    [Fact]
    public async Task MalformedSignupsThatUsedToCrashAreAnswered400()
    {
        foreach (var name in new[] { "lone high surrogate escaped in the address", "raw 0xFF byte inside the address", "null topic" })
        {
            var body = Corpus.Bodies.Single(b => b.Name == name);
            using var content = new ByteArrayContent(body.Bytes);
            content.Headers.TryAddWithoutValidation("Content-Type", body.ContentType);
            using var response = await _client.PostAsync("/subscriptions", content);
            Assert.Equal(HttpStatusCode.BadRequest, response.StatusCode);
            Assert.Equal("application/problem+json", response.Content.Headers.ContentType?.MediaType);
        }

        var manyFields = Corpus.Bodies.Single(b => b.Name == "form with 1,500 fields");
        var (id, key) = await database.AddSubscriberAsync("fields@example.org", "active", maxPapers: null, "lidar");
        var token = _app.Services.GetRequiredService<LinkTokens>().Create(LinkPurpose.Preferences, id, key);
        var tooMany = await RawHttp.SendAsync(_address, "POST", $"/preferences?token={token}", manyFields.ContentType, manyFields.Bytes);
        Assert.Equal(413, tooMany.Status);

        // 65 fields: past FormOptions' 64, below the form reader's own 1,024 that the signup form used to be held to.
        var padded = "email=padded%40example.org&topics=lidar&" + string.Join('&', Enumerable.Range(0, 63).Select(i => $"pad{i}=x"));
        var padding = await RawHttp.SendAsync(_address, "POST", "/subscriptions", "application/x-www-form-urlencoded", Encoding.ASCII.GetBytes(padded));
        Assert.Equal(413, padding.Status);
        Assert.Equal(0, await database.ScalarAsync<long>("SELECT count(*) FROM subscribers WHERE email = 'padded@example.org'"));
    }

    [Fact]
    public async Task ABodySentAtOneBytePerSecondIsAnswered408()
    {
        using var socket = new TcpClient();
        await socket.ConnectAsync(_address.Host, _address.Port);
        var stream = socket.GetStream();
        var head = $"POST /subscriptions HTTP/1.1\r\nHost: {_address.Authority}\r\nContent-Type: application/json\r\nContent-Length: 200\r\n\r\n";
        await stream.WriteAsync(Encoding.ASCII.GetBytes(head));

        // Kestrel's minimum data rate (240 bytes/s after a 5 s grace period) cuts the body off; the answer
        // arrives while we are still trickling.
        var answer = new StringBuilder();
        var buffer = new byte[4096];
        var reading = stream.ReadAsync(buffer).AsTask();
        for (var i = 0; i < 30 && !reading.IsCompleted; i++)
        {
            try
            {
                await stream.WriteAsync("{"u8.ToArray());
            }
            catch (IOException)
            {
                break; // the server closed the connection after answering
            }
            await Task.WhenAny(reading, Task.Delay(TimeSpan.FromSeconds(1)));
        }
        // Without the minimum rate, the server would wait for the rest of the body for good: fail rather than hang.
        answer.Append(Encoding.ASCII.GetString(buffer, 0, await reading.WaitAsync(TimeSpan.FromSeconds(30))));

        Assert.StartsWith("HTTP/1.1 408", answer.ToString(), StringComparison.Ordinal);
    }

    [Fact]
    public async Task EveryResponseCarriesSecurityHeadersAndTokenPagesAreNotCached()
    {
        using var signupPage = await _client.GetAsync("/");
        using var tokenPage = await _client.GetAsync("/unsubscribe?token=whatever");
        using var api = await _client.GetAsync("/api/papers?date=2026-11-25");

        foreach (var response in new[] { signupPage, tokenPage, api })
        {
            Assert.False(response.Headers.Contains("Server"), "no Server header");
            Assert.Equal("nosniff", Assert.Single(response.Headers.GetValues("X-Content-Type-Options")));
            Assert.Equal("DENY", Assert.Single(response.Headers.GetValues("X-Frame-Options")));
            Assert.Equal("no-referrer", Assert.Single(response.Headers.GetValues("Referrer-Policy")));
            var policy = Assert.Single(response.Headers.GetValues("Content-Security-Policy"));
            Assert.Contains("default-src 'none'", policy);
            Assert.Contains("frame-ancestors 'none'", policy);
            // One script may run, the time-zone filler of the signup and preferences pages, named by its hash; no other.
            var scripts = Assert.Single(policy.Split(';', StringSplitOptions.TrimEntries), directive => directive.StartsWith("script-src", StringComparison.Ordinal));
            Assert.Matches(@"^script-src 'sha256-[A-Za-z0-9+/]{43}='$", scripts);
        }
        Assert.Contains("no-store", tokenPage.Headers.CacheControl?.ToString());
        Assert.Null(signupPage.Headers.CacheControl);
    }

    private static void Check(RawHttp.Answer answer, string what, List<string> failures)
    {
        if (answer.Status is < 200 or >= 500 || answer.Body.Contains("   at ", StringComparison.Ordinal) || answer.Body.Contains("Exception", StringComparison.Ordinal))
        {
            failures.Add($"{what}: {answer.Status} {answer.Body[..Math.Min(answer.Body.Length, 200)]}");
        }
    }

    private Task<RawHttp.Answer> PostChunkedAsync(string url, string contentType, byte[] body) =>
        RawHttp.SendAsync(_address, "POST", url, contentType, body, chunked: true);

    private static class Corpus
    {
        private static readonly Lazy<(IReadOnlyList<HostileBody> Bodies, IReadOnlyList<string> QueryValues)> Loaded = new(Load);

        public static IReadOnlyList<HostileBody> Bodies => Loaded.Value.Bodies;

        public static IReadOnlyList<string> QueryValues => Loaded.Value.QueryValues;

        private static (IReadOnlyList<HostileBody>, IReadOnlyList<string>) Load()
        {
            using var document = JsonDocument.Parse(File.ReadAllBytes(Path.Combine(AppContext.BaseDirectory, "Payloads", "hostile-requests.json")));
            var bodies = document.RootElement.GetProperty("bodies").EnumerateArray().Select(entry =>
            {
                byte[] bytes;
                if (entry.TryGetProperty("base64", out var encoded))
                {
                    bytes = Convert.FromBase64String(encoded.GetString()!);
                }
                else if (entry.TryGetProperty("parts", out var parts))
                {
                    bytes = Encoding.UTF8.GetBytes(string.Concat(parts.EnumerateArray().Select(part =>
                        string.Concat(Enumerable.Repeat(part.GetProperty("text").GetString(), part.GetProperty("times").GetInt32())))));
                }
                else
                {
                    bytes = Encoding.UTF8.GetBytes(entry.GetProperty("body").GetString()!);
                }
                return new HostileBody(entry.GetProperty("name").GetString()!, entry.GetProperty("contentType").GetString()!, bytes);
            }).ToList();
            var queryValues = document.RootElement.GetProperty("queryValues").EnumerateArray().Select(value => value.GetString()!).ToList();
            return (bodies, queryValues);
        }
    }

    private sealed record HostileBody(string Name, string ContentType, byte[] Bytes);
}
