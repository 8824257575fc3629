using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Hosting;
using Subscriptions.Bounces;
using Subscriptions.Email;
using Subscriptions.Tests.Infrastructure;

namespace Subscriptions.Tests;

/// <summary>The bounce mailbox read from a real Dovecot over IMAP, with real DSN and ARF samples, into a real PostgreSQL.</summary>
public sealed class BounceMailboxTests(TestDatabase database, DovecotServer dovecot) : IClassFixture<TestDatabase>, IClassFixture<DovecotServer>
{
    private static readonly string Samples = Path.Combine(AppContext.BaseDirectory, "Payloads", "bounces");
    private static readonly DateOnly SentDay = new(2026, 11, 24);

    private static readonly string[] Readable =
    [
        "postfix-user-unknown.eml", "postfix-headers-only.eml", "exim-rejected.eml", "gmail-no-such-user.eml", "office365-rejected.eml",
        "outlook-delayed.eml", "yahoo-deferred.eml", "arf-abuse-redacted.eml", "arf-feedback-loop.eml",
    ];

    private static readonly string[] Malformed = ["malformed-truncated.eml", "malformed-gmail-empty-status.eml", "malformed-garbage.eml"];

    [Fact]
    public async Task EveryReadableReportIsActedOnAndMovedAndTheRestLeftAloneAndCountedOnce()
    {
        // Found only by the returned Message-ID: the DSN names an alias, not the address we sent to.
        var (postfix, _) = await database.AddSubscriberAsync("postfix-hard@example.org", "active", null, "lidar");
        var postfixDelivery = await AddSentDeliveryAsync(postfix);
        // Found by the Message-ID in text/rfc822-headers, which is that of a confirmation email.
        var (headers, _) = await database.AddSubscriberAsync("headers-hard@example.org", "pending", null, "lidar");
        var headersOutbox = await database.ScalarAsync<long>("""
            INSERT INTO email_outbox (subscriber_id, kind, status, next_attempt_at, created_at, sent_at)
            VALUES (@headers, 'confirmation', 'sent', now(), now(), now()) RETURNING id
            """, new { headers });
        var (redacted, _) = await database.AddSubscriberAsync("arf-complaint@example.org", "active", null, "lidar");
        var arfDelivery = await AddSentDeliveryAsync(redacted);
        // Found by the failed recipient.
        foreach (var email in new[] { "exim-hard@example.org", "gmail-hard@example.org", "office365-hard@example.org",
                     "outlook-delayed@example.org", "yahoo-soft@example.org", "fbl-complaint@example.org" })
        {
            await database.AddSubscriberAsync(email, "active", null, "lidar");
        }
        await using var app = new TestApp(database, settings: new Dictionary<string, string?>(dovecot.Settings) { ["Bounces:PollInterval"] = "00:00:00.100" });
        // The samples return the Message-IDs of our emails as this service makes them, with their MAC.
        var messageIds = app.Services.GetRequiredService<MessageIds>();
        foreach (var sample in Readable.Concat(Malformed))
        {
            dovecot.Deliver(Path.Combine(Samples, sample),
                ("digest-postfix@subscriptions.test", $"{messageIds.ForDelivery(postfixDelivery, SentDay)}@subscriptions.test"),
                ("confirmation-postfix@subscriptions.test", $"{messageIds.ForOutbox(headersOutbox)}@subscriptions.test"),
                ("digest-arf@subscriptions.test", $"{messageIds.ForDelivery(arfDelivery, SentDay)}@subscriptions.test"));
        }

        await app.WaitForFreshRoundAsync<BounceMailboxWorker>();

        // Hard bounces: bounced and suppressed, confirmations included.
        foreach (var email in new[] { "postfix-hard@example.org", "headers-hard@example.org", "exim-hard@example.org", "gmail-hard@example.org", "office365-hard@example.org" })
        {
            Assert.Equal("bounced", await database.SubscriberStatusAsync(email));
        }
        // Complaints: unsubscribed at once and suppressed.
        Assert.Equal("unsubscribed", await database.SubscriberStatusAsync("arf-complaint@example.org"));
        Assert.Equal("unsubscribed", await database.SubscriberStatusAsync("fbl-complaint@example.org"));
        // A delay warning is no bounce; one soft bounce is not enough.
        Assert.Equal("active", await database.SubscriberStatusAsync("outlook-delayed@example.org"));
        Assert.Equal("active", await database.SubscriberStatusAsync("yahoo-soft@example.org"));

        var suppressions = await database.QueryAsync<(string Email, string Reason, string? Detail)>("SELECT email, reason, detail FROM suppressions ORDER BY email");
        Assert.Equal(
        [
            ("arf-complaint@example.org", "complaint", null),
            ("exim-hard@example.org", "hard_bounce", "5.0.0"),
            ("fbl-complaint@example.org", "complaint", null),
            ("gmail-hard@example.org", "hard_bounce", "5.1.1"),
            ("headers-hard@example.org", "hard_bounce", "5.1.0"),
            ("office365-hard@example.org", "hard_bounce", "5.1.0"),
            ("postfix-hard@example.org", "hard_bounce", "5.1.1"),
        ], suppressions);

        // Every report read is in the processed folder (created on first use); the unreadable ones are where they were.
        Assert.Equal(Readable.Length, (await dovecot.SubjectsAsync("Processed")).Count);
        Assert.Equal(Malformed.Length, (await dovecot.SubjectsAsync("INBOX")).Count);
        var mailbox = app.Services.GetRequiredService<BounceMailbox>();
        Assert.Equal(Malformed.Length, mailbox.UnreadableCount);
        // Told by their UID and the sender's domain: an out-of-office reply's sender is a subscriber, and logs outlive an erasure.
        var left = app.Logs.GetSnapshot().Where(log => log.Message.StartsWith("Left message", StringComparison.Ordinal)).ToList();
        Assert.Contains(left, log => log.Message.Contains(", from ", StringComparison.Ordinal));
        Assert.All(left, log => Assert.DoesNotContain("@", log.Message, StringComparison.Ordinal));

        // Two more soft bounces within the window bounce the address; the unreadable ones are not counted again.
        dovecot.Deliver(Path.Combine(Samples, "yahoo-deferred.eml"));
        dovecot.Deliver(Path.Combine(Samples, "yahoo-deferred.eml"));
        app.Services.GetRequiredService<BounceMailboxSignal>().Wake();
        await app.WaitForFreshRoundAsync<BounceMailboxWorker>();

        Assert.Equal("bounced", await database.SubscriberStatusAsync("yahoo-soft@example.org"));
        Assert.Equal(("soft_bounces", "4.7.0"), Assert.Single(await database.QueryAsync<(string, string)>(
            "SELECT reason, detail FROM suppressions WHERE email = 'yahoo-soft@example.org'")));
        Assert.Equal(3, await database.ScalarAsync<long>("SELECT count(*) FROM bounce_events WHERE email = 'yahoo-soft@example.org' AND kind = 'soft'"));
        Assert.Equal(Readable.Length + 2, (await dovecot.SubjectsAsync("Processed")).Count);
        Assert.Equal(Malformed.Length, (await dovecot.SubjectsAsync("INBOX")).Count);
        Assert.Equal(Malformed.Length, mailbox.UnreadableCount);
    }

    [Fact]
    public Task TwoInstancesReadingOneMailboxRecordEachReportOnce() => WithOwnMailboxAsync(async (ownDatabase, ownDovecot) =>
    {
        var samples = new[] { "exim-rejected.eml", "gmail-no-such-user.eml", "office365-rejected.eml", "yahoo-deferred.eml", "yahoo-deferred.eml" };
        foreach (var email in new[] { "exim-hard@example.org", "gmail-hard@example.org", "office365-hard@example.org", "yahoo-soft@example.org" })
        {
            await ownDatabase.AddSubscriberAsync(email, "active", null, "lidar");
        }
        foreach (var sample in samples)
        {
            ownDovecot.Deliver(Path.Combine(Samples, sample));
        }
        var settings = new Dictionary<string, string?>(ownDovecot.Settings) { ["Bounces:PollInterval"] = "00:00:00.050" };
        await using var first = new TestApp(ownDatabase, settings: settings);
        await using var second = new TestApp(ownDatabase, settings: settings);

        await Task.WhenAll(first.WaitForFreshRoundAsync<BounceMailboxWorker>(), second.WaitForFreshRoundAsync<BounceMailboxWorker>());

        Assert.Equal(samples.Length, await ownDatabase.ScalarAsync<long>("SELECT count(*) FROM bounce_events"));
        Assert.Equal(samples.Length, (await ownDovecot.SubjectsAsync("Processed")).Count);
        Assert.Empty(await ownDovecot.SubjectsAsync("INBOX"));
    });

    [Fact]
    public Task AReportReadAgainAfterItsMoveFailedIsNotCountedAgain() => WithOwnMailboxAsync(async (ownDatabase, ownDovecot) =>
    {
        await ownDatabase.AddSubscriberAsync("yahoo-soft@example.org", "active", null, "lidar");
        await ownDatabase.AddSubscriberAsync("exim-hard@example.org", "active", null, "lidar");
        // Two soft bounces: counted once each, one short of Bounces:SoftBounceLimit (3).
        foreach (var sample in new[] { "yahoo-deferred.eml", "yahoo-deferred.eml", "exim-rejected.eml" })
        {
            ownDovecot.Deliver(Path.Combine(Samples, sample));
        }
        // The connection drops as each round moves what it recorded, as an IMAP server's timeout or restart would do.
        await using var proxy = new ImapMoveDroppingProxy(ownDovecot.Port);
        var settings = new Dictionary<string, string?>(ownDovecot.Settings)
        {
            ["Bounces:Imap:Port"] = proxy.Port.ToString(System.Globalization.CultureInfo.InvariantCulture),
            ["Bounces:PollInterval"] = "00:00:00.050",
        };
        await using var app = new TestApp(ownDatabase, settings: settings);

        await app.WaitForFreshRoundAsync<BounceMailboxWorker>();
        Assert.True(proxy.DroppedMoves >= 2, $"{proxy.DroppedMoves} move(s) dropped");
        Assert.Empty(await ownDovecot.SubjectsAsync("Processed"));
        proxy.LetMovesThrough();
        await app.WaitForFreshRoundAsync<BounceMailboxWorker>();

        Assert.Equal(3, (await ownDovecot.SubjectsAsync("Processed")).Count);
        Assert.Empty(await ownDovecot.SubjectsAsync("INBOX"));
        Assert.Equal(2, await ownDatabase.ScalarAsync<long>("SELECT count(*) FROM bounce_events WHERE email = 'yahoo-soft@example.org' AND kind = 'soft'"));
        Assert.Equal("active", await ownDatabase.SubscriberStatusAsync("yahoo-soft@example.org"));
        Assert.Equal(1, await ownDatabase.ScalarAsync<long>("SELECT count(*) FROM bounce_events WHERE email = 'exim-hard@example.org'"));
        Assert.Equal("bounced", await ownDatabase.SubscriberStatusAsync("exim-hard@example.org"));
        Assert.Equal(["exim-hard@example.org"], await ownDatabase.QueryAsync<string>("SELECT email FROM suppressions"));

        // Once the reports are out of the folder, the round after forgets them: their UIDs cannot come back.
        await app.WaitForFreshRoundAsync<BounceMailboxWorker>();
        Assert.Equal(0, await ownDatabase.ScalarAsync<long>("SELECT count(*) FROM bounce_reports"));
    });

    [Fact]
    public Task AReportNamingAnAddressWithANulIsLeftAndCountedAndTheRoundGoesOn() => WithOwnMailboxAsync(async (ownDatabase, ownDovecot) =>
    {
        await ownDatabase.AddSubscriberAsync("exim-hard@example.org", "active", null, "lidar");
        // Decoded, the recipient is "yahoo-soft\0@example.org": PostgreSQL refused it, and with it the whole chunk, every round.
        ownDovecot.Deliver(Path.Combine(Samples, "yahoo-deferred.eml"),
            ("Original-Recipient: rfc822;yahoo-soft@example.org", "Original-Recipient: rfc822;=?utf-8?q?yahoo-soft=00?=@example.org"));
        ownDovecot.Deliver(Path.Combine(Samples, "exim-rejected.eml"));
        await using var app = new TestApp(ownDatabase, settings: new Dictionary<string, string?>(ownDovecot.Settings) { ["Bounces:PollInterval"] = "00:00:00.050" });

        await app.WaitForFreshRoundAsync<BounceMailboxWorker>();

        Assert.Equal("bounced", await ownDatabase.SubscriberStatusAsync("exim-hard@example.org"));
        Assert.Equal(1, await ownDatabase.ScalarAsync<long>("SELECT count(*) FROM bounce_events"));
        Assert.Single(await ownDovecot.SubjectsAsync("Processed"));
        Assert.Single(await ownDovecot.SubjectsAsync("INBOX"));
        Assert.Equal(1, app.Services.GetRequiredService<BounceMailbox>().UnreadableCount);
    });

    [Fact]
    public Task AMessageLargerThanAnyReportIsLeftUnreadAndCountedAndTheRoundGoesOn() => WithOwnMailboxAsync(async (ownDatabase, ownDovecot) =>
    {
        await ownDatabase.AddSubscriberAsync("exim-hard@example.org", "active", null, "lidar");
        await ownDatabase.AddSubscriberAsync("gmail-hard@example.org", "active", null, "lidar");
        // A true report about exim-hard@, padded past the limit (anyone can write to the bounce mailbox): read whole, such a
        // message took that much memory, and as many of them as came.
        var padding = string.Concat(Enumerable.Repeat(new string('x', 76) + "\n", BounceMailbox.MaxReportBytes / 77 + 1));
        ownDovecot.Deliver(Path.Combine(Samples, "exim-rejected.eml"),
            ("This message was created automatically by mail delivery software.", "This message was created automatically by mail delivery software.\n" + padding));
        ownDovecot.Deliver(Path.Combine(Samples, "gmail-no-such-user.eml"));
        await using var app = new TestApp(ownDatabase, settings: new Dictionary<string, string?>(ownDovecot.Settings) { ["Bounces:PollInterval"] = "00:00:00.050" });

        await app.WaitForFreshRoundAsync<BounceMailboxWorker>();

        Assert.Equal("active", await ownDatabase.SubscriberStatusAsync("exim-hard@example.org"));
        Assert.Equal("bounced", await ownDatabase.SubscriberStatusAsync("gmail-hard@example.org"));
        Assert.Single(await ownDovecot.SubjectsAsync("INBOX"));
        Assert.Single(await ownDovecot.SubjectsAsync("Processed"));
        Assert.Equal(1, app.Services.GetRequiredService<BounceMailbox>().UnreadableCount);
    });

    [Fact]
    public Task AReportIsBelievedOnlyAboutAnEmailOfOursOrASubscribersAddress() => WithOwnMailboxAsync(async (ownDatabase, ownDovecot) =>
    {
        var (guessed, _) = await ownDatabase.AddSubscriberAsync("guessed@example.org", "active", null, "lidar");
        var guessedDelivery = await ownDatabase.ScalarAsync<long>("""
            INSERT INTO deliveries (subscriber_id, day, papers, status, attempts, next_attempt_at, created_at, sent_at)
            VALUES (@guessed, @SentDay, '[]', 'sent', 1, now(), now(), now()) RETURNING id
            """, new { guessed, SentDay });
        await ownDatabase.AddSubscriberAsync("full-mailbox@example.org", "active", null, "lidar");
        await ownDatabase.AddSubscriberAsync("exim-hard@example.org", "active", null, "lidar");
        // Anyone can write to the bounce mailbox. A Message-ID as digests had them before they carried a MAC, which anyone
        // could count up to, is no email of ours: the report names an alias, and nobody is bounced.
        ownDovecot.DeliverBounce("bounces@subscriptions.test", "alias@forwarder.example", returnedMessageId: $"delivery-{guessedDelivery}.20261124@subscriptions.test");
        // An address that is no subscriber's is not suppressed (it would keep them from ever signing up).
        ownDovecot.DeliverBounce("bounces@subscriptions.test", "never-subscribed@example.org");
        // Longer than an address can be: more than the suppression list's index can hold. It stopped every round after it.
        ownDovecot.DeliverBounce("bounces@subscriptions.test", $"{Convert.ToHexString(System.Security.Cryptography.RandomNumberGenerator.GetBytes(4000))}@example.org");
        // A full mailbox is a persistent transient failure (RFC 3463), even as 5.2.2: a soft bounce.
        ownDovecot.DeliverBounce("bounces@subscriptions.test", "full-mailbox@example.org", status: "5.2.2");
        // A report that the message was relayed is news, not an unreadable message.
        ownDovecot.DeliverBounce("bounces@subscriptions.test", "guessed@example.org", status: "2.0.0", action: "relayed");
        ownDovecot.Deliver(Path.Combine(Samples, "exim-rejected.eml"));
        await using var app = new TestApp(ownDatabase, settings: new Dictionary<string, string?>(ownDovecot.Settings) { ["Bounces:PollInterval"] = "00:00:00.050" });

        await app.WaitForFreshRoundAsync<BounceMailboxWorker>();

        Assert.Equal("active", await ownDatabase.SubscriberStatusAsync("guessed@example.org"));
        Assert.Equal("active", await ownDatabase.SubscriberStatusAsync("full-mailbox@example.org"));
        Assert.Equal("bounced", await ownDatabase.SubscriberStatusAsync("exim-hard@example.org"));
        Assert.Equal(["exim-hard@example.org"], await ownDatabase.QueryAsync<string>("SELECT email FROM suppressions"));
        Assert.Equal([("exim-hard@example.org", "hard"), ("full-mailbox@example.org", "soft")],
            await ownDatabase.QueryAsync<(string, string)>("SELECT email, kind FROM bounce_events ORDER BY email"));
        Assert.Equal(6, (await ownDovecot.SubjectsAsync("Processed")).Count);
        Assert.Empty(await ownDovecot.SubjectsAsync("INBOX"));
        Assert.Equal(0, app.Services.GetRequiredService<BounceMailbox>().UnreadableCount);
    });

    [Fact]
    public Task OnAServerThatKeepsFoldersUnderAPrefixTheProcessedFolderIsFoundAgain() => WithOwnMailboxAsync(async (ownDatabase, ownDovecot) =>
    {
        await ownDatabase.AddSubscriberAsync("exim-hard@example.org", "active", null, "lidar");
        await ownDatabase.AddSubscriberAsync("gmail-hard@example.org", "active", null, "lidar");
        ownDovecot.Deliver(Path.Combine(Samples, "exim-rejected.eml"));
        await using var app = new TestApp(ownDatabase, settings: new Dictionary<string, string?>(ownDovecot.Settings) { ["Bounces:PollInterval"] = "00:00:00.050" });
        await app.WaitForFreshRoundAsync<BounceMailboxWorker>();

        // The first round made INBOX.Processed; the next ones must find it by the name in the settings, or fail to make it
        // again and read nothing more (a review's worry for such servers; MailKit and Dovecot find it).
        ownDovecot.Deliver(Path.Combine(Samples, "gmail-no-such-user.eml"));
        await app.WaitForFreshRoundAsync<BounceMailboxWorker>();

        Assert.Equal("bounced", await ownDatabase.SubscriberStatusAsync("exim-hard@example.org"));
        Assert.Equal("bounced", await ownDatabase.SubscriberStatusAsync("gmail-hard@example.org"));
        Assert.Equal(2, (await ownDovecot.SubjectsAsync("INBOX.Processed")).Count);
        Assert.Empty(await ownDovecot.SubjectsAsync("INBOX"));
    }, folderPrefix: "INBOX.");

    [Fact]
    public Task ThePasswordIsNotSentToAMailboxThatOfferedNoTlsUnlessSecurityIsNone() => WithOwnMailboxAsync(async (ownDatabase, ownDovecot) =>
    {
        await ownDatabase.AddSubscriberAsync("gmail-hard@example.org", "active", null, "lidar");
        ownDovecot.Deliver(Path.Combine(Samples, "gmail-no-such-user.eml"));
        // The fixture's Dovecot has no TLS, as a server whose STARTTLS offer was struck out on the way.
        var settings = new Dictionary<string, string?>(ownDovecot.Settings) { ["Bounces:PollInterval"] = "00:00:00.050", ["Bounces:Imap:Security"] = "Auto" };
        await using (var app = new TestApp(ownDatabase, settings: settings))
        {
            await app.WaitForFreshRoundAsync<BounceMailboxWorker>();
        }

        Assert.Equal(0, await ownDatabase.ScalarAsync<long>("SELECT count(*) FROM bounce_events"));
        Assert.Single(await ownDovecot.SubjectsAsync("INBOX"));
    });

    [Fact]
    public Task ReportsAreDeletedFromTheProcessedFolderOnceTheyArrivedLongerAgoThanKeepProcessed() => WithOwnMailboxAsync(async (ownDatabase, ownDovecot) =>
    {
        await ownDatabase.AddSubscriberAsync("exim-hard@example.org", "active", null, "lidar");
        await ownDatabase.AddSubscriberAsync("gmail-hard@example.org", "active", null, "lidar");
        // One report arrived 40 days ago (read late: the service was down, or this is the first version that prunes), one now.
        ownDovecot.Deliver(Path.Combine(Samples, "exim-rejected.eml"), receivedAt: DateTimeOffset.UtcNow.AddDays(-40));
        ownDovecot.Deliver(Path.Combine(Samples, "gmail-no-such-user.eml"));
        await using (var app = new TestApp(ownDatabase, settings: new Dictionary<string, string?>(ownDovecot.Settings) { ["Bounces:PollInterval"] = "00:00:00.050" }))
        {
            await app.WaitForFreshRoundAsync<BounceMailboxWorker>();
            Assert.Contains(app.Logs.GetSnapshot(), record => record.Message.Contains("1 old report(s) deleted from the processed folder", StringComparison.Ordinal));
        }

        // Both are acted on; the old one is gone from the mailbox, with the subscriber's address it names.
        Assert.Equal("bounced", await ownDatabase.SubscriberStatusAsync("exim-hard@example.org"));
        Assert.Equal("bounced", await ownDatabase.SubscriberStatusAsync("gmail-hard@example.org"));
        var kept = Assert.Single(await ownDovecot.SubjectsAsync("Processed"));
        Assert.Empty(await ownDovecot.SubjectsAsync("INBOX"));

        // 0 keeps them for good.
        ownDovecot.Deliver(Path.Combine(Samples, "exim-rejected.eml"), receivedAt: DateTimeOffset.UtcNow.AddDays(-40));
        await using (var keeping = new TestApp(ownDatabase,
            settings: new Dictionary<string, string?>(ownDovecot.Settings) { ["Bounces:PollInterval"] = "00:00:00.050", ["Bounces:KeepProcessed"] = "0" }))
        {
            await keeping.WaitForFreshRoundAsync<BounceMailboxWorker>();
        }
        var processed = await ownDovecot.SubjectsAsync("Processed");
        Assert.Equal(2, processed.Count);
        Assert.Contains(kept, processed);
    });

    [Fact]
    public async Task NoImapHostMeansNoMailboxReader()
    {
        await using var app = new TestApp(database);

        Assert.Empty(app.Services.GetServices<IHostedService>().OfType<BounceMailboxWorker>());
    }

    private Task<long> AddSentDeliveryAsync(long subscriberId) => database.ScalarAsync<long>("""
        INSERT INTO deliveries (subscriber_id, day, papers, status, attempts, next_attempt_at, created_at, sent_at)
        VALUES (@subscriberId, @SentDay, '[]', 'sent', 1, now(), now(), now()) RETURNING id
        """, new { subscriberId, SentDay });

    /// <summary>Runs <paramref name="test"/> against a mailbox and database of its own, whose counts are then that test's alone.</summary>
    private static async Task WithOwnMailboxAsync(Func<TestDatabase, DovecotServer, Task> test, string? folderPrefix = null)
    {
        var ownDatabase = new TestDatabase();
        await ownDatabase.InitializeAsync();
        var ownDovecot = new DovecotServer(folderPrefix);
        await ownDovecot.InitializeAsync();
        try
        {
            await test(ownDatabase, ownDovecot);
        }
        finally
        {
            await ownDovecot.DisposeAsync();
            await ownDatabase.DisposeAsync();
            await PostgresServer.DropDatabaseAsync(ownDatabase.ConnectionString);
        }
    }
}
