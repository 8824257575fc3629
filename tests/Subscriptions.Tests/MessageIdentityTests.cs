using Microsoft.Extensions.Configuration;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Options;
using Subscriptions.Digest;
using Subscriptions.Email;
using Subscriptions.Tests.Infrastructure;

namespace Subscriptions.Tests;

/// <summary>
/// A message that the server accepted but whose acceptance was never recorded (a crash in between) is sent
/// again; it carries the same Message-ID, so the receiving side can tell it is a repeat.
/// </summary>
public sealed class MessageIdentityTests(TestDatabase database) : IClassFixture<TestDatabase>, IAsyncLifetime
{
    private static readonly DateOnly Day = new(2026, 11, 25);
    private TestSmtpServer _smtp = null!;

    public async Task InitializeAsync() => _smtp = await TestSmtpServer.StartNewAsync();

    public async Task DisposeAsync() => await _smtp.DisposeAsync();

    [Fact]
    public async Task ADigestSentAgainAfterACrashRepeatsItsMessageId()
    {
        await using var app = new TestApp(database, _smtp);
        await database.SaveDayAsync(Day, TestDatabase.LidarPaper);
        await database.AddSubscriberAsync("twice@example.org", "active", maxPapers: null, "lidar");

        await RunDigestAsync(app);
        var first = Assert.Single(_smtp.MessagesTo("twice@example.org"));
        var deliveryId = await database.ScalarAsync<long>("SELECT id FROM deliveries");
        // What it is, and a MAC of that: nobody can make up another's.
        Assert.Matches($@"^delivery-{deliveryId}\.20261125\.[0-9a-f]{{12}}@subscriptions\.test$", first.MessageId);
        Assert.Equal(first.MessageId, $"{app.Services.GetRequiredService<MessageIds>().ForDelivery(deliveryId, Day)}@subscriptions.test");

        // The crash: the server said 250, the process died before recording it, and its claim ran out.
        await database.ExecuteAsync("""
            UPDATE deliveries SET status = 'sending', claimed_until = now() - interval '1 second', sent_at = NULL, message_id = NULL WHERE id = @deliveryId;
            INSERT INTO delivery_queue (delivery_id, day) VALUES (@deliveryId, @Day);
            """, new { deliveryId, Day });
        await RunDigestAsync(app);

        var messages = _smtp.MessagesTo("twice@example.org");
        Assert.Equal(2, messages.Count);
        Assert.Equal(first.MessageId, messages[1].MessageId);
        Assert.Equal(first.MessageId, await database.ScalarAsync<string>("SELECT message_id FROM deliveries WHERE id = @deliveryId", new { deliveryId }));
    }

    [Fact]
    public async Task AConfirmationSentAgainAfterACrashRepeatsItsMessageId()
    {
        await using var app = new TestApp(database, _smtp);
        using var client = app.CreatePlainClient();

        await client.SignUpAsync("again@example.org", "lidar");
        var first = await _smtp.WaitForMessageToAsync("again@example.org");
        var outboxId = await database.ScalarAsync<long>(
            "SELECT o.id FROM email_outbox o JOIN subscribers s ON s.id = o.subscriber_id WHERE s.email = 'again@example.org'");
        Assert.Matches($@"^outbox-{outboxId}\.[0-9a-f]{{12}}@subscriptions\.test$", first.MessageId);

        // The crash: the server accepted it, and the transaction that would have recorded it rolled back.
        await database.ExecuteAsync("UPDATE email_outbox SET status = 'pending', sent_at = NULL, message_id = NULL WHERE id = @outboxId", new { outboxId });
        var messages = await Eventually.ValueAsync(() => Task.FromResult(_smtp.MessagesTo("again@example.org")), found => found.Count == 2,
            "the confirmation to be sent again", found => $"{found.Count} message(s)");

        Assert.Equal(first.MessageId, messages[1].MessageId);
    }

    [Fact]
    public async Task EveryEmailHasAMessageIdOfItsOwn()
    {
        await using var app = new TestApp(database, _smtp);
        using var client = app.CreatePlainClient();

        await client.SignUpAsync("first@example.org", "lidar");
        await client.SignUpAsync("second@example.org", "lidar");

        var first = await _smtp.WaitForMessageToAsync("first@example.org");
        var second = await _smtp.WaitForMessageToAsync("second@example.org");
        Assert.NotEqual(first.MessageId, second.MessageId);
    }

    [Fact]
    public void TheMacsOfEmailsAlreadySentStayTheSame()
    {
        // Made by the code of 0d402fc, under one installation's secret: links in mail already delivered must keep working, and
        // its Message-IDs and return paths must keep naming the emails they name, whatever computes the MACs now.
        const string secret = "a-secret-of-an-installation-that-has-sent-mail";
        var app = Options.Create(new Subscriptions.Subscribers.AppOptions { TokenSecret = secret, BaseUrl = "https://papers.example.org" });
        var tokens = new Subscriptions.Subscribers.LinkTokens(app);
        byte[] nonce = [0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15];
        Assert.Equal("AQIAAAAAAAAAKgABAgMEBQYHCAkKCwwNDg_PhqXIOZkWcQJ_PzsaoXtJ", tokens.Create(Subscriptions.Subscribers.LinkPurpose.Unsubscribe, 42, nonce));
        Assert.Equal("AQMAAAAAAAAAKgABAgMEBQYHCAkKCwwNDg9Ed96o_QyY_ix14H6ASUDN", tokens.Create(Subscriptions.Subscribers.LinkPurpose.Preferences, 42, nonce));

        var messageIds = new MessageIds(Options.Create(new MailOptions { From = "Trending Papers <papers@example.org>" }),
            new ConfigurationBuilder().AddInMemoryCollection(new Dictionary<string, string?> { ["App:TokenSecret"] = secret }).Build());
        Assert.Equal("delivery-42.20261125.f65410ea1cba", messageIds.ForDelivery(42, Day));
        Assert.Equal("outbox-7.04cf3c776e73", messageIds.ForOutbox(7));
        Assert.Equal(new SentEmail(SentEmailKind.Delivery, 42, Day), messageIds.OfMessageId("<delivery-42.20261125.f65410ea1cba@example.org>"));
    }

    private static Task<DigestSummary> RunDigestAsync(TestApp app) =>
        app.Services.GetRequiredService<DigestRunner>().RunAsync(Day, ingestFirst: false, dryRun: false, _ => { }, CancellationToken.None);
}
