using System.Net;
using System.Net.Http.Json;
using System.Text;
using Subscriptions.Tests.Infrastructure;

namespace Subscriptions.Tests;

/// <summary>Every invalid signup is answered with a 4xx problem naming what is wrong, and stores nothing.</summary>
public sealed class SignupValidationTests(TestDatabase database) : IClassFixture<TestDatabase>, IAsyncLifetime
{
    private TestApp _app = null!;
    private HttpClient _client = null!;

    public Task InitializeAsync()
    {
        _app = new TestApp(database);
        _client = _app.CreatePlainClient();
        return Task.CompletedTask;
    }

    public async Task DisposeAsync()
    {
        _client.Dispose();
        await _app.DisposeAsync();
    }

    public static TheoryData<string, string[], string> InvalidSignups => new()
    {
        { "", ["robotics"], "email" },
        { "not-an-address", ["robotics"], "email" },
        { "ada@", ["robotics"], "email" },
        { "ada@localhost", ["robotics"], "email" },
        { "Ada Lovelace <ada@example.org>", ["robotics"], "email" },
        { "ada@example.org, bob@example.org", ["robotics"], "email" },
        { "ada@example.org\r\nBcc: victim@example.org", ["robotics"], "email" },
        { "ada@example.org\n", ["robotics"], "email" },
        { new string('a', 64) + "@" + string.Join('.', Enumerable.Repeat(new string('b', 60), 4)) + ".org", ["robotics"], "email" },
        { "ada@example.org", [], "topics" },
        { "ada@example.org", ["", "   "], "topics" },
        { "ada@example.org", [.. Enumerable.Range(1, 21).Select(i => $"topic number {i}")], "topics" },
        { "ada@example.org", ["robotics", new string('x', 201)], "topics[1]" },
        { "ada@example.org", ["the of and"], "topics[0]" },
        { "ada@example.org", ["robotics", "!!! ???"], "topics[1]" },
        { "ada@example.org", ["-medical"], "topics[0]" },
        { "ada@example.org", ["robot\u0000ics"], "topics[0]" },
        { "ada@example.org", ["lidar OR \uffff"], "topics[0]" }, // no XML text: it broke every feed that named it
    };

    [Theory]
    [MemberData(nameof(InvalidSignups))]
    public async Task InvalidSignupIsRejectedNamingTheFieldAndStoresNothing(string email, string[] topics, string field)
    {
        var response = await _client.SignUpAsync(email, topics);

        Assert.Equal(HttpStatusCode.BadRequest, response.StatusCode);
        Assert.Equal("application/problem+json", response.Content.Headers.ContentType?.MediaType);
        var problem = await response.ReadJsonAsync();
        Assert.Equal(400, problem.GetProperty("status").GetInt32());
        var messages = problem.GetProperty("errors").GetProperty(field);
        Assert.False(string.IsNullOrWhiteSpace(messages[0].GetString()));
        await AssertNothingStoredAsync();
    }

    [Fact]
    public async Task EveryBadFieldIsNamedAtOnce()
    {
        var response = await _client.SignUpAsync("nope", "fine topic", "the", "also fine", "of");

        var errors = (await response.ReadJsonAsync()).GetProperty("errors");
        Assert.Equal(["email", "topics[1]", "topics[3]"], errors.EnumerateObject().Select(e => e.Name).Order());
        Assert.Contains("no word to search for", errors.GetProperty("topics[1]")[0].GetString());
        await AssertNothingStoredAsync();
    }

    public static TheoryData<string, string, HttpStatusCode> MalformedBodies => new()
    {
        { "application/json", "{\"email\": \"ada@example.org\", \"topics\": [\"robotics\"", HttpStatusCode.BadRequest },
        { "application/json", "", HttpStatusCode.BadRequest },
        { "application/json", "[\"ada@example.org\"]", HttpStatusCode.BadRequest },
        { "application/json", "{\"email\": 42, \"topics\": [\"robotics\"]}", HttpStatusCode.BadRequest },
        { "application/json", "{\"email\": \"ada@example.org\", \"topics\": \"robotics\"}", HttpStatusCode.BadRequest },
        { "application/json", "{\"email\": \"ada@example.org\", \"topics\": [1, 2]}", HttpStatusCode.BadRequest },
        { "text/plain", "email=ada@example.org&topics=robotics", HttpStatusCode.UnsupportedMediaType },
        { "application/xml", "<signup/>", HttpStatusCode.UnsupportedMediaType },
        { "application/json", "{\"email\": \"ada@example.org\", \"topics\": [\"" + new string('x', 17 * 1024) + "\"]}", HttpStatusCode.RequestEntityTooLarge },
        { "application/x-www-form-urlencoded", "email=ada%40example.org&topics=" + new string('x', 17 * 1024), HttpStatusCode.RequestEntityTooLarge },
    };

    [Theory]
    [MemberData(nameof(MalformedBodies))]
    public async Task MalformedBodiesGetAProblemNeverAServerError(string contentType, string body, HttpStatusCode expected)
    {
        using var content = new StringContent(body, Encoding.UTF8);
        content.Headers.ContentType = new System.Net.Http.Headers.MediaTypeHeaderValue(contentType);

        var response = await _client.PostAsync("/subscriptions", content);

        Assert.Equal(expected, response.StatusCode);
        Assert.Equal("application/problem+json", response.Content.Headers.ContentType?.MediaType);
        var problem = await response.ReadJsonAsync();
        Assert.Equal((int)expected, problem.GetProperty("status").GetInt32());
        Assert.False(string.IsNullOrEmpty(problem.GetProperty("title").GetString()));
        await AssertNothingStoredAsync();
    }

    [Fact]
    public async Task AnOversizedBodyWithoutContentLengthIsStillRefused()
    {
        using var content = new StreamContent(new MemoryStream(Encoding.UTF8.GetBytes("{\"email\": \"" + new string('x', 20_000) + "\"}")));
        content.Headers.ContentType = new System.Net.Http.Headers.MediaTypeHeaderValue("application/json");
        content.Headers.ContentLength = null;
        using var request = new HttpRequestMessage(HttpMethod.Post, "/subscriptions") { Content = content };
        request.Headers.TransferEncodingChunked = true;

        var response = await _client.SendAsync(request);

        Assert.Equal(HttpStatusCode.RequestEntityTooLarge, response.StatusCode);
        await AssertNothingStoredAsync();
    }

    [Fact]
    public async Task ValidSignupIsCleanedUpBeforeItIsStored()
    {
        var response = await _client.PostAsJsonAsync("/subscriptions", new
        {
            Email = "  tidy@example.org ",
            Topics = new[] { " depth estimation ", "", "Depth Estimation", "\"vision transformers\" OR ViT" },
        });

        Assert.Equal(HttpStatusCode.Accepted, response.StatusCode);
        Assert.Equal("accepted", (await response.ReadJsonAsync()).GetProperty("status").GetString());
        Assert.Equal(["depth estimation", "\"vision transformers\" OR ViT"], await database.QueryAsync<string>(
            "SELECT t.text FROM topics t JOIN subscribers s ON s.id = t.subscriber_id WHERE s.email = 'tidy@example.org' ORDER BY position"));
        var pickedUp = Assert.Single(await _app.WaitForPickupAsync(1));
        Assert.Equal("tidy@example.org", Assert.Single(pickedUp.To.Mailboxes).Address);
        await database.ExecuteAsync("DELETE FROM subscribers WHERE email = 'tidy@example.org'");
    }

    private async Task AssertNothingStoredAsync()
    {
        Assert.Equal(0, await database.ScalarAsync<long>("SELECT count(*) FROM subscribers WHERE email <> 'tidy@example.org'"));
        Assert.Equal(0, await database.ScalarAsync<long>(
            "SELECT count(*) FROM email_outbox o JOIN subscribers s ON s.id = o.subscriber_id WHERE s.email <> 'tidy@example.org'"));
    }
}
