using System.Net;
using System.Text;
using System.Text.Json;
using Microsoft.AspNetCore.Http;
using Subscriptions.Subscribers;
using Subscriptions.Tests.Infrastructure;

namespace Subscriptions.Tests;

/// <summary>Signups cannot be used to flood an address, bots filling the honeypot get nowhere, and proxies are counted right.</summary>
public sealed class SignupAbuseTests(TestDatabase database) : IClassFixture<TestDatabase>, IAsyncLifetime
{
    private TestSmtpServer _smtp = null!;

    public async Task InitializeAsync() => _smtp = await TestSmtpServer.StartNewAsync();

    public async Task DisposeAsync() => await _smtp.DisposeAsync();

    [Fact]
    public async Task TwentySignupsOfOneAddressFromTwentyClientsSendTwoEmailsAndGetOneAnswer()
    {
        // One signup a minute per client: each of the 20 clients is within its own limit.
        await using var app = new TestApp(database, _smtp, settings: new Dictionary<string, string?> { ["App:SignupsPerMinute"] = "1" });
        var answers = new List<(int Status, string Body)>();

        for (var i = 1; i <= 20; i++)
        {
            answers.Add(await SignUpFromAsync(app, IPAddress.Parse($"203.0.113.{i}"), new { email = "target@example.org", topics = new[] { $"topic {i}" } }));
            // Whatever the outbox would send for this signup, it has sent before the next one arrives.
            await app.WaitForFreshRoundAsync<EmailOutboxWorker>();
        }

        Assert.All(answers, answer => Assert.Equal((StatusCodes.Status202Accepted, answers[0].Body), answer));
        Assert.Contains(SubscriberEndpoints.AcceptedMessage, answers[0].Body);
        Assert.Equal(2, _smtp.MessagesTo("target@example.org").Count);
        Assert.Equal(2, await database.ScalarAsync<long>(
            "SELECT count(*) FROM email_outbox o JOIN subscribers s ON s.id = o.subscriber_id WHERE s.email = 'target@example.org'"));
        // The second confirmation's link still works: signups past the limit changed nothing, and a signup of a
        // pending address keeps the first signup's topics.
        Assert.Equal(["topic 1"], await database.QueryAsync<string>(
            "SELECT t.text FROM topics t JOIN subscribers s ON s.id = t.subscriber_id WHERE s.email = 'target@example.org'"));
        using var client = app.CreatePlainClient();
        var confirm = await client.GetAsync(TestApp.LinkIn(_smtp.MessagesTo("target@example.org")[1], "/subscriptions/confirm"));
        Assert.Equal(HttpStatusCode.OK, confirm.StatusCode);
    }

    [Fact]
    public async Task TwentySignupsOfOneAddressAtOnceNeverSendMoreThanTwoEmails()
    {
        await using var app = new TestApp(database, _smtp, settings: new Dictionary<string, string?> { ["App:SignupsPerMinute"] = "1" });

        var answers = await Task.WhenAll(Enumerable.Range(1, 20).Select(i =>
            SignUpFromAsync(app, IPAddress.Parse($"198.51.100.{i}"), new { email = "rush@example.org", topics = new[] { "robotics" } })));
        await app.WaitForFreshRoundAsync<EmailOutboxWorker>();

        Assert.All(answers, answer => Assert.Equal((StatusCodes.Status202Accepted, answers[0].Body), answer));
        // Signups that overlap replace each other's unsent confirmation, so fewer than two may go out; never more.
        Assert.InRange(_smtp.MessagesTo("rush@example.org").Count, 1, 2);
    }

    [Fact]
    public async Task TheSignupPageHidesTheHoneypotFromPeople()
    {
        await using var app = new TestApp(database, _smtp);
        using var client = app.CreatePlainClient();

        var page = await client.GetStringAsync("/");

        var field = page[page.IndexOf("<div aria-hidden=\"true\"", StringComparison.Ordinal)..];
        field = field[..field.IndexOf("</div>", StringComparison.Ordinal)];
        Assert.Contains("left:-10000px", field);
        // The attributes, not their bytes: the Razor renderer writes an empty value as a bare `value`.
        var input = field[field.IndexOf("<input id=\"website\"", StringComparison.Ordinal)..];
        input = input[..(input.IndexOf('>') + 1)];
        Assert.Contains("name=\"website\" type=\"text\" tabindex=\"-1\" autocomplete=\"off\"", input);
        Assert.Matches("value(=\"\")?\\s*/?>$", input);
    }

    [Fact]
    public async Task AFilledHoneypotGetsTheUsualAnswerAndNothingIsStoredOrSent()
    {
        await using var app = new TestApp(database, _smtp);
        using var client = app.CreatePlainClient();

        var json = await client.PostAsync("/subscriptions", new StringContent(
            JsonSerializer.Serialize(new { email = "bot-json@example.org", topics = new[] { "robotics" }, website = "http://spam.example" }), Encoding.UTF8, "application/json"));
        var person = await client.SignUpAsync("person@example.org", "robotics");
        var form = await client.PostFormAsync("/subscriptions", ("email", "bot-form@example.org"), ("topics", "robotics"), ("website", "spam"));
        var personByForm = await client.PostFormAsync("/subscriptions", ("email", "person-form@example.org"), ("topics", "robotics"), ("website", ""));
        await app.WaitForFreshRoundAsync<EmailOutboxWorker>();

        Assert.Equal(HttpStatusCode.Accepted, json.StatusCode);
        Assert.Equal(await person.Content.ReadAsStringAsync(), await json.Content.ReadAsStringAsync());
        Assert.Equal(HttpStatusCode.Accepted, form.StatusCode);
        Assert.Equal(await personByForm.Content.ReadAsStringAsync(), await form.Content.ReadAsStringAsync());
        Assert.Null(await database.SubscriberStatusAsync("bot-json@example.org"));
        Assert.Null(await database.SubscriberStatusAsync("bot-form@example.org"));
        Assert.Empty(_smtp.MessagesTo("bot-json@example.org"));
        Assert.Empty(_smtp.MessagesTo("bot-form@example.org"));
        Assert.Equal("pending", await database.SubscriberStatusAsync("person-form@example.org"));
        Assert.Single(_smtp.MessagesTo("person@example.org"));
    }

    [Fact]
    public async Task BehindAKnownProxyTheForwardedClientIsCounted()
    {
        await using var app = new TestApp(database, _smtp, settings: new Dictionary<string, string?>
        {
            ["App:SignupsPerMinute"] = "1",
            // An address, and a network as an ingress controller's pods are (their addresses change).
            ["App:KnownProxies"] = "10.0.0.6, 10.42.0.0/16",
        });
        var proxy = IPAddress.Parse("10.42.7.5");
        var stranger = IPAddress.Parse("10.43.0.5");

        var first = await SignUpFromAsync(app, proxy, Signup("fwd1@example.org"), forwardedFor: "198.51.100.1");
        var otherClient = await SignUpFromAsync(app, IPAddress.Parse("10.0.0.6"), Signup("fwd2@example.org"), forwardedFor: "198.51.100.2");
        var sameClient = await SignUpFromAsync(app, proxy, Signup("fwd3@example.org"), forwardedFor: "198.51.100.1");
        // Not a known proxy: what it forwards is not believed, so both of its signups count against it.
        var untrusted = await SignUpFromAsync(app, stranger, Signup("fwd4@example.org"), forwardedFor: "198.51.100.3");
        var untrustedAgain = await SignUpFromAsync(app, stranger, Signup("fwd5@example.org"), forwardedFor: "198.51.100.4");

        Assert.Equal(StatusCodes.Status202Accepted, first.Status);
        Assert.Equal(StatusCodes.Status202Accepted, otherClient.Status);
        Assert.Equal(StatusCodes.Status429TooManyRequests, sameClient.Status);
        Assert.Equal(StatusCodes.Status202Accepted, untrusted.Status);
        Assert.Equal(StatusCodes.Status429TooManyRequests, untrustedAgain.Status);
    }

    [Fact]
    public async Task TrustingEveryProxyStillCountsTheAddressTheProxyAddedNotOneTheClientWrote()
    {
        // ASPNETCORE_FORWARDEDHEADERS_ENABLED=true: ASP.NET Core puts the forwarded-headers middleware first itself. Run a
        // second time by the service's own pipeline, it took the next entry too, the one the client wrote.
        await using var app = new TestApp(database, _smtp, settings: new Dictionary<string, string?>
        {
            ["App:SignupsPerMinute"] = "1",
            ["FORWARDEDHEADERS_ENABLED"] = "true",
        });
        var proxy = IPAddress.Parse("10.0.0.5");

        var first = await SignUpFromAsync(app, proxy, Signup("spoof1@example.org"), forwardedFor: "198.51.100.1, 203.0.113.7");
        var sameClientOtherClaim = await SignUpFromAsync(app, proxy, Signup("spoof2@example.org"), forwardedFor: "198.51.100.2, 203.0.113.7");

        Assert.Equal(StatusCodes.Status202Accepted, first.Status);
        Assert.Equal(StatusCodes.Status429TooManyRequests, sameClientOtherClaim.Status);
    }

    [Fact]
    public async Task AnIPv6ClientIsCountedByItsSlash64()
    {
        await using var app = new TestApp(database, _smtp, settings: new Dictionary<string, string?> { ["App:SignupsPerMinute"] = "1" });

        var first = await SignUpFromAsync(app, IPAddress.Parse("2001:db8:1:2::1"), Signup("v6-1@example.org"));
        var sameNetwork = await SignUpFromAsync(app, IPAddress.Parse("2001:db8:1:2:a:b:c:d"), Signup("v6-2@example.org"));
        var otherNetwork = await SignUpFromAsync(app, IPAddress.Parse("2001:db8:1:3::1"), Signup("v6-3@example.org"));

        Assert.Equal(StatusCodes.Status202Accepted, first.Status);
        Assert.Equal(StatusCodes.Status429TooManyRequests, sameNetwork.Status);
        Assert.Equal(StatusCodes.Status202Accepted, otherNetwork.Status);
    }

    [Fact]
    public async Task AKnownProxyThatIsNotAnAddressStopsStartup()
    {
        var (exitCode, _, error) = await ServiceBinary.RunAsync(["serve", "--App:KnownProxies=10.0.0.5, proxy.internal"], new Dictionary<string, string>
        {
            ["ConnectionStrings__Postgres"] = database.ConnectionString,
            ["App__TokenSecret"] = "a-secret-for-the-signup-abuse-tests-only",
        });

        Assert.Equal(78, exitCode);
        Assert.Contains("App:KnownProxies \"proxy.internal\" is not an IP address or network", error);
    }

    private static object Signup(string email) => new { email, topics = new[] { "robotics" } };

    /// <summary>A JSON signup as it arrives from <paramref name="client"/> (the connection's remote address), optionally with X-Forwarded-For.</summary>
    private static async Task<(int Status, string Body)> SignUpFromAsync(TestApp app, IPAddress client, object signup, string? forwardedFor = null)
    {
        var body = JsonSerializer.SerializeToUtf8Bytes(signup);
        var context = await app.Server.SendAsync(request =>
        {
            request.Request.Method = HttpMethods.Post;
            request.Request.Scheme = "http";
            request.Request.Host = new HostString("subscriptions.test");
            request.Request.Path = "/subscriptions";
            request.Request.ContentType = "application/json";
            request.Request.ContentLength = body.Length;
            request.Request.Body = new MemoryStream(body);
            request.Connection.RemoteIpAddress = client;
            if (forwardedFor is not null)
            {
                request.Request.Headers["X-Forwarded-For"] = forwardedFor;
            }
        });
        using var reader = new StreamReader(context.Response.Body);
        return (context.Response.StatusCode, await reader.ReadToEndAsync());
    }
}
