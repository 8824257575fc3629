using System.Net;
using System.Net.Http.Headers;
using System.Security.Cryptography;
using System.Text;
using System.Text.Json;
using Microsoft.Extensions.DependencyInjection;
using Subscriptions.Email;
using Subscriptions.Tests.Infrastructure;

namespace Subscriptions.Tests;

/// <summary><c>POST /webhooks/bounces</c>: signed provider events act like the bounce mailbox; anything else changes nothing.</summary>
public sealed class BounceWebhookTests(TestDatabase database) : IClassFixture<TestDatabase>, IAsyncLifetime
{
    private const string Secret = "webhook-secret-for-the-tests";
    private TestApp _app = null!;
    private HttpClient _client = null!;

    public Task InitializeAsync()
    {
        _app = new TestApp(database, settings: new Dictionary<string, string?> { ["Bounces:WebhookSecret"] = Secret });
        _client = _app.CreatePlainClient();
        return Task.CompletedTask;
    }

    public async Task DisposeAsync()
    {
        _client.Dispose();
        await _app.DisposeAsync();
    }

    [Fact]
    public async Task ASignedHardBounceBouncesAndSuppressesTheAddress()
    {
        await database.AddSubscriberAsync("webhook-hard@example.org", "active", null, "lidar");

        var response = await PostAsync("""{"type":"bounce","email":"Webhook-Hard@example.org","status":"5.1.1","permanent":true}""");

        Assert.Equal(HttpStatusCode.OK, response.StatusCode);
        Assert.Equal("bounced", await database.SubscriberStatusAsync("webhook-hard@example.org"));
        Assert.Equal(("hard_bounce", "5.1.1"), await SuppressionOfAsync("webhook-hard@example.org"));
    }

    [Fact]
    public async Task AnEventFindsTheDigestItIsAboutByTheDeliveryItsMessageIdNames()
    {
        var (subscriberId, _) = await database.AddSubscriberAsync("digest-reader@example.org", "active", null, "lidar");
        var deliveryId = await database.ScalarAsync<long>("""
            INSERT INTO deliveries (subscriber_id, day, papers, status, attempts, next_attempt_at, created_at, sent_at)
            VALUES (@subscriberId, '2026-11-24', '[]', 'sent', 1, now(), now(), now()) RETURNING id
            """, new { subscriberId });
        // As the digest makes it: the delivery and its day, with a MAC of them.
        var messageId = $"{_app.Services.GetRequiredService<MessageIds>().ForDelivery(deliveryId, new DateOnly(2026, 11, 24))}@subscriptions.test";

        // The provider names a forwarding address, not the subscriber's: the Message-ID decides.
        var response = await PostAsync($$"""{"type":"complaint","email":"forwarded@example.net","messageId":"<{{messageId}}>"}""");

        Assert.Equal(HttpStatusCode.OK, response.StatusCode);
        Assert.Equal("unsubscribed", await database.SubscriberStatusAsync("digest-reader@example.org"));
    }

    [Fact]
    public async Task AnEventMatchesTheSubscriberByTheCanonicalAddress()
    {
        // Stored composed (é); the provider reports it decomposed (e + combining acute) and in capitals.
        await database.AddSubscriberAsync("jos\u00e9@example.org", "active", null, "lidar");

        var response = await PostAsync("""{"type":"complaint","email":"JOSE\u0301@Example.ORG"}""");

        Assert.Equal(HttpStatusCode.OK, response.StatusCode);
        Assert.Equal("unsubscribed", await database.SubscriberStatusAsync("jos\u00e9@example.org"));
    }

    [Fact]
    public async Task SignedSoftBouncesCountAndTheThirdBouncesTheAddress()
    {
        await database.AddSubscriberAsync("webhook-soft@example.org", "active", null, "lidar");
        const string body = """[{"type":"bounce","email":"webhook-soft@example.org","status":"4.2.2"},{"type":"bounce","email":"webhook-soft@example.org","status":"4.2.2"}]""";

        Assert.Equal(HttpStatusCode.OK, (await PostAsync(body)).StatusCode);
        Assert.Equal("active", await database.SubscriberStatusAsync("webhook-soft@example.org"));

        Assert.Equal(HttpStatusCode.OK, (await PostAsync("""{"type":"bounce","email":"webhook-soft@example.org","permanent":false}""")).StatusCode);
        Assert.Equal("bounced", await database.SubscriberStatusAsync("webhook-soft@example.org"));
        Assert.Equal("soft_bounces", (await SuppressionOfAsync("webhook-soft@example.org")).Reason);
    }

    [Fact]
    public async Task PostmarksSpamComplaintWithItsBasicAuthUnsubscribesAtOnce()
    {
        await database.AddSubscriberAsync("postmark-complaint@example.org", "active", null, "lidar");
        await database.AddSubscriberAsync("postmark-hard@example.org", "active", null, "lidar");
        using var complaint = new HttpRequestMessage(HttpMethod.Post, "/webhooks/bounces")
        {
            Content = new StringContent("""
                {"RecordType":"SpamComplaint","MessageStream":"outbound","ID":42,"Type":"SpamComplaint","TypeCode":512,"Name":"Spam complaint",
                 "MessageID":"00000000-0000-0000-0000-000000000000","ServerID":1234,"Description":"The subscriber explicitly marked this message as spam.",
                 "Details":"Test spam complaint details","Email":"postmark-complaint@example.org","From":"papers@subscriptions.test",
                 "BouncedAt":"2026-11-25T13:28:10.2735393-04:00","DumpAvailable":true,"Inactive":true,"CanActivate":false,"Subject":"Test subject"}
                """, Encoding.UTF8, "application/json"),
        };
        complaint.Headers.Authorization = new AuthenticationHeaderValue("Basic", Convert.ToBase64String(Encoding.UTF8.GetBytes($"postmark:{Secret}")));
        using var bounce = new HttpRequestMessage(HttpMethod.Post, "/webhooks/bounces")
        {
            Content = new StringContent("""
                {"RecordType":"Bounce","ID":43,"Type":"HardBounce","TypeCode":1,"Name":"Hard bounce","MessageID":"883953f4-6105-42a2-a16a-77a8eac79483",
                 "Description":"The server was unable to deliver your message (ex: unknown user, mailbox not found).","Details":"smtp;550 5.1.1 unknown",
                 "Email":"postmark-hard@example.org","From":"papers@subscriptions.test","BouncedAt":"2026-11-25T13:28:10-04:00","Inactive":true}
                """, Encoding.UTF8, "application/json"),
        };
        bounce.Headers.Authorization = new AuthenticationHeaderValue("Basic", Convert.ToBase64String(Encoding.UTF8.GetBytes($"postmark:{Secret}")));

        Assert.Equal(HttpStatusCode.OK, (await _client.SendAsync(complaint)).StatusCode);
        Assert.Equal(HttpStatusCode.OK, (await _client.SendAsync(bounce)).StatusCode);

        Assert.Equal("unsubscribed", await database.SubscriberStatusAsync("postmark-complaint@example.org"));
        Assert.Equal("complaint", (await SuppressionOfAsync("postmark-complaint@example.org")).Reason);
        Assert.Equal("bounced", await database.SubscriberStatusAsync("postmark-hard@example.org"));
    }

    [Fact]
    public async Task AmazonSesNotificationsThroughSnsBounceAndUnsubscribe()
    {
        await database.AddSubscriberAsync("ses-hard@example.org", "active", null, "lidar");
        await database.AddSubscriberAsync("ses-complaint@example.org", "active", null, "lidar");
        await database.AddSubscriberAsync("ses-soft@example.org", "active", null, "lidar");
        const string bounce = """
            {"notificationType":"Bounce","bounce":{"feedbackId":"0100018c-bounce","bounceType":"Permanent","bounceSubType":"General",
             "bouncedRecipients":[{"emailAddress":"ses-hard@example.org","action":"failed","status":"5.1.1","diagnosticCode":"smtp; 550 5.1.1 user unknown"}],
             "timestamp":"2026-11-25T07:00:03.000Z","reportingMTA":"dsn; a8-50.smtp-out.amazonses.com"},
             "mail":{"timestamp":"2026-11-25T07:00:01.000Z","source":"papers@subscriptions.test","messageId":"0100018c-ses-id",
             "destination":["ses-hard@example.org"],"commonHeaders":{"messageId":"<unknown@subscriptions.test>","subject":"Papers"}}}
            """;
        const string complaint = """
            {"notificationType":"Complaint","complaint":{"feedbackId":"0100018c-complaint","complaintFeedbackType":"abuse",
             "complainedRecipients":[{"emailAddress":"ses-complaint@example.org"}],"timestamp":"2026-11-25T08:00:00.000Z"},
             "mail":{"timestamp":"2026-11-25T07:00:01.000Z","source":"papers@subscriptions.test","messageId":"0100018c-ses-id-2","destination":["ses-complaint@example.org"]}}
            """;
        const string transient = """
            {"eventType":"Bounce","bounce":{"bounceType":"Transient","bounceSubType":"MailboxFull",
             "bouncedRecipients":[{"emailAddress":"ses-soft@example.org","status":"4.2.2"}]},"mail":{"messageId":"0100018c-ses-id-3"}}
            """;

        foreach (var message in new[] { bounce, complaint, transient })
        {
            var envelope = JsonSerializer.Serialize(new Dictionary<string, string>
            {
                ["Type"] = "Notification",
                ["MessageId"] = Guid.NewGuid().ToString(),
                ["TopicArn"] = "arn:aws:sns:eu-west-1:123456789012:ses-events",
                ["Message"] = message,
                ["Timestamp"] = "2026-11-25T08:00:01.000Z",
                ["SignatureVersion"] = "1",
            });
            Assert.Equal(HttpStatusCode.OK, (await PostAsync(envelope)).StatusCode);
        }
        var confirmation = await PostAsync("""
            {"Type":"SubscriptionConfirmation","MessageId":"165545c9","Token":"2336412f37","TopicArn":"arn:aws:sns:eu-west-1:123456789012:ses-events",
             "Message":"You have chosen to subscribe to the topic.","SubscribeURL":"https://sns.eu-west-1.amazonaws.com/?Action=ConfirmSubscription&Token=2336412f37"}
            """);

        Assert.Equal(HttpStatusCode.OK, confirmation.StatusCode);
        Assert.Equal("bounced", await database.SubscriberStatusAsync("ses-hard@example.org"));
        Assert.Equal(("hard_bounce", "5.1.1"), await SuppressionOfAsync("ses-hard@example.org"));
        Assert.Equal("unsubscribed", await database.SubscriberStatusAsync("ses-complaint@example.org"));
        Assert.Equal("active", await database.SubscriberStatusAsync("ses-soft@example.org"));
        Assert.Equal(1, await database.ScalarAsync<long>("SELECT count(*) FROM bounce_events WHERE email = 'ses-soft@example.org' AND kind = 'soft'"));
    }

    [Fact]
    public async Task AFullMailboxIsASoftBounceEvenAs5x2x2WithAComment()
    {
        await database.AddSubscriberAsync("webhook-full@example.org", "active", null, "lidar");

        var response = await PostAsync("""{"type":"bounce","email":"webhook-full@example.org","status":"5.2.2 (mailbox full)"}""");

        Assert.Equal(HttpStatusCode.OK, response.StatusCode);
        Assert.Equal("active", await database.SubscriberStatusAsync("webhook-full@example.org"));
        Assert.Equal("soft", await database.ScalarAsync<string>("SELECT kind FROM bounce_events WHERE email = 'webhook-full@example.org'"));
    }

    [Fact]
    public async Task ANotificationDeliveredAgainIsNotCountedAgain()
    {
        // Amazon SNS delivers at least once, and Postmark calls again when it did not get the answer: three deliveries of one
        // soft bounce suppressed the address (Bounces:SoftBounceLimit is 3).
        var bodies = new Dictionary<string, string>
        {
            ["again-sns@example.org"] = JsonSerializer.Serialize(new Dictionary<string, string>
            {
                ["Type"] = "Notification",
                ["MessageId"] = "5f1b7c1e-sns-delivered-again",
                ["Message"] = """{"notificationType":"Bounce","bounce":{"bounceType":"Transient","bouncedRecipients":[{"emailAddress":"again-sns@example.org","status":"4.2.2"}]}}""",
            }),
            ["again-ses@example.org"] = """
                {"eventType":"Bounce","bounce":{"feedbackId":"0100018c-again","bounceType":"Transient","bouncedRecipients":[{"emailAddress":"again-ses@example.org","status":"4.4.7"}]}}
                """,
            ["again-postmark@example.org"] = """{"RecordType":"Bounce","ID":4242,"Type":"SoftBounce","Email":"again-postmark@example.org"}""",
            ["again-generic@example.org"] = """{"id":"n-1","type":"bounce","email":"again-generic@example.org","status":"4.2.2"}""",
        };
        foreach (var email in bodies.Keys)
        {
            await database.AddSubscriberAsync(email, "active", null, "lidar");
        }

        foreach (var body in bodies.Values.SelectMany(body => Enumerable.Repeat(body, 3)))
        {
            Assert.Equal(HttpStatusCode.OK, (await PostAsync(body)).StatusCode);
        }

        foreach (var email in bodies.Keys)
        {
            Assert.Equal("active", await database.SubscriberStatusAsync(email));
            Assert.Equal(1, await database.ScalarAsync<long>("SELECT count(*) FROM bounce_events WHERE email = @email", new { email }));
        }
    }

    [Theory]
    [InlineData(null)]
    [InlineData("sha256=0000000000000000000000000000000000000000000000000000000000000000")]
    [InlineData("sha256=not-hex")]
    [InlineData("md5=abc")]
    public async Task AnUnsignedOrWronglySignedRequestIs401AndChangesNothing(string? signature)
    {
        await database.AddSubscriberAsync($"unsigned-{signature?.Length ?? 0}@example.org", "active", null, "lidar");
        var body = $$"""{"type":"complaint","email":"unsigned-{{signature?.Length ?? 0}}@example.org"}""";
        using var request = new HttpRequestMessage(HttpMethod.Post, "/webhooks/bounces") { Content = new StringContent(body, Encoding.UTF8, "application/json") };
        if (signature is not null)
        {
            request.Headers.Add("X-Signature", signature);
        }

        var response = await _client.SendAsync(request);

        Assert.Equal(HttpStatusCode.Unauthorized, response.StatusCode);
        Assert.Equal("application/problem+json", response.Content.Headers.ContentType?.MediaType);
        Assert.Equal("active", await database.SubscriberStatusAsync($"unsigned-{signature?.Length ?? 0}@example.org"));
        Assert.Equal(0, await database.ScalarAsync<long>("SELECT count(*) FROM bounce_events WHERE email LIKE 'unsigned-%'"));
    }

    [Fact]
    public async Task RefusedCallsAreReportedToTheOperatorAtMostOnceAMinute()
    {
        await using var app = new TestApp(database, settings: new Dictionary<string, string?> { ["Bounces:WebhookSecret"] = Secret });
        using var client = app.CreatePlainClient();
        using var unsigned = new HttpRequestMessage(HttpMethod.Post, "/webhooks/bounces")
        {
            Content = new StringContent("""{"type":"complaint","email":"refused@example.org"}""", Encoding.UTF8, "application/json"),
        };
        Assert.Equal(HttpStatusCode.Unauthorized, (await client.SendAsync(unsigned)).StatusCode);
        using var malformed = new HttpRequestMessage(HttpMethod.Post, "/webhooks/bounces") { Content = new StringContent("[1", Encoding.UTF8, "application/json") };
        malformed.Headers.Add("X-Signature", Sign("[1"));
        Assert.Equal(HttpStatusCode.BadRequest, (await client.SendAsync(malformed)).StatusCode);

        // The first refusal is told at once (before, neither was); the second waits for the next warning, a minute on at the earliest.
        var warning = Assert.Single(app.Logs.GetSnapshot(), log => log.Message.StartsWith("Bounce webhook: refused", StringComparison.Ordinal));
        Assert.Equal(Microsoft.Extensions.Logging.LogLevel.Warning, warning.Level);
        Assert.StartsWith("Bounce webhook: refused 1 call(s) since the last warning, the latest from", warning.Message, StringComparison.Ordinal);
        Assert.Contains("unsigned or wrongly signed", warning.Message, StringComparison.Ordinal);
    }

    [Fact]
    public async Task ASignatureOverAnotherBodyIs401()
    {
        await database.AddSubscriberAsync("tampered@example.org", "active", null, "lidar");
        using var request = new HttpRequestMessage(HttpMethod.Post, "/webhooks/bounces")
        {
            Content = new StringContent("""{"type":"complaint","email":"tampered@example.org"}""", Encoding.UTF8, "application/json"),
        };
        request.Headers.Add("X-Signature", Sign("""{"type":"complaint","email":"someone-else@example.org"}"""));

        Assert.Equal(HttpStatusCode.Unauthorized, (await _client.SendAsync(request)).StatusCode);
        Assert.Equal("active", await database.SubscriberStatusAsync("tampered@example.org"));
    }

    [Theory]
    [InlineData("{not json")]
    [InlineData("""{"type":"bounce","email":"x@example.org"}""")]
    [InlineData("""{"type":"delivered","email":"x@example.org"}""")]
    [InlineData("""{"type":"complaint","email":"not an address"}""")]
    [InlineData("""[1, 2]""")]
    [InlineData("""{"RecordType":"Delivery","Email":"x@example.org"}""")]
    [InlineData("""{"Type":"Notification","Message":"not json"}""")]
    [InlineData("""{"notificationType":"Bounce","bounce":{"bounceType":"Permanent","bouncedRecipients":[{"status":"5.1.1"}]}}""")]
    public async Task AMalformedSignedBodyIs400AndChangesNothing(string body)
    {
        var response = await PostAsync(body);

        Assert.Equal(HttpStatusCode.BadRequest, response.StatusCode);
        Assert.Equal("application/problem+json", response.Content.Headers.ContentType?.MediaType);
        Assert.Equal(0, await database.ScalarAsync<long>("SELECT count(*) FROM bounce_events WHERE email = 'x@example.org'"));
    }

    [Fact]
    public async Task AnAddressLongerThanAnyCanBeIs400AndChangesNothing()
    {
        // Incompressible, and more than PostgreSQL's index on the suppression list can hold: it was a 500.
        var email = $"{Convert.ToHexString(System.Security.Cryptography.RandomNumberGenerator.GetBytes(3000))}@example.org";

        var response = await PostAsync($$"""{"type":"bounce","email":"{{email}}","permanent":true}""");

        Assert.Equal(HttpStatusCode.BadRequest, response.StatusCode);
        Assert.Equal("application/problem+json", response.Content.Headers.ContentType?.MediaType);
        Assert.Equal(0, await database.ScalarAsync<long>("SELECT count(*) FROM bounce_events WHERE length(email) > 254"));
    }

    // Each of these once made the endpoint throw (a 500): a property read from a value that is no object, or text
    // PostgreSQL cannot store (a NUL) or .NET cannot read (a lone surrogate).
    [Theory]
    [InlineData("""{"notificationType":"Bounce","bounce":1}""")]
    [InlineData("""{"notificationType":"Bounce","bounce":"x"}""")]
    [InlineData("""{"notificationType":"Complaint","complaint":[]}""")]
    [InlineData("""{"Type":"Notification","Message":"{\"notificationType\":\"Bounce\",\"bounce\":[1]}"}""")]
    [InlineData("""{"type":"bounce","email":"x\u0000@example.org","status":"5.1.1"}""")]
    [InlineData("""{"type":"bounce","email":"x@example.org","status":"5.1.1\u0000"}""")]
    [InlineData("""{"type":"complaint","email":"x@example.org","messageId":"<a\u0000@example.org>"}""")]
    [InlineData("""{"RecordType":"Bounce","Type":"HardBounce","Email":"x\u0000@example.org"}""")]
    [InlineData("""{"notificationType":"Bounce","bounce":{"bounceType":"Permanent","bouncedRecipients":[{"emailAddress":"x@example.org","status":"5.1.1\u0000"}]}}""")]
    [InlineData("""{"type":"bounce","email":"x\ud800@example.org","status":"5.1.1"}""")]
    [InlineData("""{"type":"complaint","email":"x@example.org","messageId":"\udc00"}""")]
    public async Task ASignedBodyWithValuesOfTheWrongShapeOrUnstorableTextIs400AndChangesNothing(string body)
    {
        var response = await PostAsync(body);

        Assert.Equal(HttpStatusCode.BadRequest, response.StatusCode);
        Assert.Equal("application/problem+json", response.Content.Headers.ContentType?.MediaType);
        Assert.Equal(0, await database.ScalarAsync<long>("SELECT count(*) FROM bounce_events WHERE email LIKE 'x%@example.org'"));
    }

    [Fact]
    public async Task ABodyOver16KiBIs413()
    {
        var body = $$"""{"type":"complaint","email":"big@example.org","padding":"{{new string('x', 17 * 1024)}}"}""";

        var response = await PostAsync(body);

        Assert.Equal(HttpStatusCode.RequestEntityTooLarge, response.StatusCode);
        Assert.Equal(0, await database.ScalarAsync<long>("SELECT count(*) FROM bounce_events WHERE email = 'big@example.org'"));
    }

    [Fact]
    public async Task WithoutASecretTheRouteDoesNotExist()
    {
        await using var app = new TestApp(database);
        using var client = app.CreatePlainClient();
        const string body = """{"type":"complaint","email":"nosecret@example.org"}""";
        using var request = new HttpRequestMessage(HttpMethod.Post, "/webhooks/bounces") { Content = new StringContent(body, Encoding.UTF8, "application/json") };
        request.Headers.Add("X-Signature", Sign(body));

        Assert.Equal(HttpStatusCode.NotFound, (await client.SendAsync(request)).StatusCode);
    }

    private async Task<HttpResponseMessage> PostAsync(string body)
    {
        using var request = new HttpRequestMessage(HttpMethod.Post, "/webhooks/bounces") { Content = new StringContent(body, Encoding.UTF8, "application/json") };
        request.Headers.Add("X-Signature", Sign(body));
        return await _client.SendAsync(request);
    }

    private static string Sign(string body) =>
        "sha256=" + Convert.ToHexStringLower(HMACSHA256.HashData(Encoding.UTF8.GetBytes(Secret), Encoding.UTF8.GetBytes(body)));

    private async Task<(string Reason, string? Detail)> SuppressionOfAsync(string email) =>
        Assert.Single(await database.QueryAsync<(string, string?)>("SELECT reason, detail FROM suppressions WHERE email = @email", new { email }));
}
