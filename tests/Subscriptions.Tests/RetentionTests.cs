using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Logging.Abstractions;
using Microsoft.Extensions.Options;
using Microsoft.Extensions.Time.Testing;
using Npgsql;
using Subscriptions.Bounces;
using Subscriptions.Database;
using Subscriptions.Subscribers;
using Subscriptions.Tests.Infrastructure;

namespace Subscriptions.Tests;

/// <summary>
/// What is deleted once old (Retention:*): finished deliveries and bounce records after a year, signups never confirmed a month
/// after their link expired.
/// </summary>
public sealed class RetentionTests : IAsyncLifetime
{
    private readonly TestDatabase _database = new();

    public Task InitializeAsync() => _database.InitializeAsync();

    public async Task DisposeAsync()
    {
        await _database.DisposeAsync();
        await PostgresServer.DropDatabaseAsync(_database.ConnectionString);
    }

    [Fact]
    public async Task FinishedDeliveriesPlannedMoreThanAYearAgoGoWithTheirPapersRecordAndTheRestStay()
    {
        var (old, _) = await _database.AddSubscriberAsync("old@example.org", "active", null, "lidar");
        var (other, _) = await _database.AddSubscriberAsync("other@example.org", "active", null, "lidar");
        // 12,000 finished deliveries of old@ planned 400 days ago and more (three of the walk's batches), one still waiting
        // among them, then other@'s: one failed and one skipped 370 days ago, one sent 360 days ago, and one planned today.
        await _database.ExecuteAsync("""
            INSERT INTO deliveries (subscriber_id, day, papers, status, next_attempt_at, created_at)
            SELECT @old, date '1990-01-01' + n, '[]', CASE WHEN n = 6000 THEN 'pending' ELSE 'sent' END, now(), now() - interval '400 days' - (12000 - n) * interval '1 minute'
            FROM generate_series(1, 12000) AS n;
            INSERT INTO deliveries (subscriber_id, day, papers, status, next_attempt_at, created_at) VALUES
                (@other, date '2025-11-20', '[]', 'failed', now(), now() - interval '370 days'),
                (@other, date '2025-11-21', '[]', 'skipped', now(), now() - interval '370 days'),
                (@other, date '2025-12-03', '[]', 'sent', now(), now() - interval '360 days'),
                (@other, date '2026-11-27', '[]', 'sent', now(), now());
            INSERT INTO delivery_papers (subscriber_id, day, paper_ids) SELECT subscriber_id, day, '{1}' FROM deliveries;
            """, new { old, other });

        await using (var app = RetainingApp())
        {
            await app.WaitForFreshRoundAsync<RetentionWorker>();
        }

        var left = await _database.QueryAsync<(long, DateTime, string)>("SELECT subscriber_id, day, status FROM deliveries ORDER BY subscriber_id, day");
        var expected = new List<(long, DateTime, string)>
        {
            (old, new DateTime(1990, 1, 1).AddDays(6000), "pending"),
            (other, new DateTime(2025, 12, 3), "sent"),
            (other, new DateTime(2026, 11, 27), "sent"),
        };
        Assert.Equal(expected, left);
        Assert.Equal([.. expected.Select(row => (row.Item1, row.Item2))],
            await _database.QueryAsync<(long, DateTime)>("SELECT subscriber_id, day FROM delivery_papers ORDER BY subscriber_id, day"));
    }

    [Fact]
    public async Task BounceRecordsReceivedMoreThanAYearAgoGoAndTheSuppressionsTheyLedToStay()
    {
        var (kept, _) = await _database.AddSubscriberAsync("kept@example.org", "active", null, "lidar");
        // 6,000 soft bounces of kept@ received 400 days ago and more (two of the walk's batches), then a hard bounce of gone@
        // 370 days ago, which suppressed it, a soft bounce of kept@ 360 days ago and a complaint received now.
        await _database.ExecuteAsync("""
            INSERT INTO bounce_events (email, kind, status, source, received_at)
            SELECT 'kept@example.org', 'soft', '4.2.2', 'imap', now() - interval '400 days' - (6000 - n) * interval '1 minute'
            FROM generate_series(1, 6000) AS n;
            INSERT INTO bounce_events (email, kind, status, source, received_at) VALUES
                ('gone@example.org', 'hard', '5.1.1', 'webhook', now() - interval '370 days'),
                ('kept@example.org', 'soft', '4.2.2', 'imap', now() - interval '360 days'),
                ('kept@example.org', 'complaint', NULL, 'webhook', now());
            INSERT INTO suppressions (email, reason, detail, created_at) VALUES ('gone@example.org', 'hard_bounce', '5.1.1', now() - interval '370 days');
            """);

        await using (var app = RetainingApp())
        {
            await app.WaitForFreshRoundAsync<RetentionWorker>();
        }

        Assert.Equal([("kept@example.org", "soft"), ("kept@example.org", "complaint")],
            await _database.QueryAsync<(string, string)>("SELECT email, kind FROM bounce_events ORDER BY id"));
        Assert.Equal(["gone@example.org"], await _database.QueryAsync<string>("SELECT email FROM suppressions"));
        Assert.Equal("active", await _database.ScalarAsync<string>("SELECT status FROM subscribers WHERE id = @kept", new { kept }));
    }

    [Fact]
    public async Task ASignupNeverConfirmedIsErasedAMonthAfterItsLinkExpiredKeepingItsSuppressionAsAHash()
    {
        var (stale, _) = await _database.AddSubscriberAsync("stale@example.org", "pending", null, "what stale@ alone typed", "lidar");
        var (recent, _) = await _database.AddSubscriberAsync("recent@example.org", "pending", null, "lidar");
        var (active, _) = await _database.AddSubscriberAsync("active@example.org", "active", null, "lidar");
        await _database.ExecuteAsync("""
            UPDATE subscribers SET confirmation_expires_at = now() - interval '31 days' WHERE id IN (@stale, @active);
            UPDATE subscribers SET confirmation_expires_at = now() - interval '29 days' WHERE id = @recent;
            INSERT INTO suppressions (email, reason, created_at) VALUES ('stale@example.org', 'hard_bounce', now());
            INSERT INTO topic_embeddings (topic, model, vector) VALUES ('what stale@ alone typed', 'test', '{1}'), ('lidar', 'test', '{1}'),
                ('what an erasure racing a save left', 'test', '{1}');
            """, new { stale, recent, active });

        await using (var app = RetainingApp())
        {
            await app.WaitForFreshRoundAsync<RetentionWorker>();
        }

        Assert.Equal(["active@example.org", "recent@example.org"], await _database.QueryAsync<string>("SELECT email FROM subscribers ORDER BY email"));
        Assert.Equal(0, await _database.ScalarAsync<long>("SELECT count(*) FROM topics WHERE subscriber_id = @stale", new { stale }));
        Assert.Equal(["lidar"], await _database.QueryAsync<string>("SELECT topic FROM topic_embeddings ORDER BY topic"));
        Assert.Equal([SubscriberData.ErasedKey("stale@example.org")], await _database.QueryAsync<string>("SELECT email FROM suppressions"));
    }

    [Fact]
    public async Task AFormerSubscriberWhoseAddressWasSignedUpAgainKeepsTheirData()
    {
        // Anyone can type anyone's address: unconfirmed, the new signup leaves the earlier subscription's data its owner's.
        var (former, _) = await _database.AddSubscriberAsync("former@example.org", "unsubscribed", null, "lidar");
        await _database.ExecuteAsync("""
            UPDATE subscribers SET status = 'pending', renewed_subscription_key = '\x00112233445566778899aabbccddeeff',
                confirmation_expires_at = now() - interval '60 days' WHERE id = @former;
            INSERT INTO deliveries (subscriber_id, day, papers, status, next_attempt_at, created_at)
            VALUES (@former, date '2026-06-01', '[]', 'sent', now(), now() - interval '180 days');
            """, new { former });

        await using (var app = RetainingApp())
        {
            await app.WaitForFreshRoundAsync<RetentionWorker>();
        }

        Assert.Equal("pending", await _database.SubscriberStatusAsync("former@example.org"));
        Assert.Equal(1, await _database.ScalarAsync<long>("SELECT count(*) FROM deliveries WHERE subscriber_id = @former", new { former }));
    }

    [Fact]
    public async Task ASignupWhoseConfirmationBouncedOrDrewAComplaintIsErasedLikeAnyUnconfirmedOne()
    {
        var (bounced, _) = await _database.AddSubscriberAsync("typo@example.org", "pending", null, "lidar");
        var (complained, _) = await _database.AddSubscriberAsync("never-asked@example.org", "pending", null, "lidar");
        var (former, _) = await _database.AddSubscriberAsync("former@example.org", "unsubscribed", null, "lidar");
        await _database.ExecuteAsync("""
            UPDATE subscribers SET confirmation_expires_at = now() - interval '31 days';
            UPDATE subscribers SET confirmed_at = now() - interval '90 days' WHERE id = @former;
            """, new { former });
        await using (var app = new TestApp(_database))
        {
            await app.Services.GetRequiredService<SuppressionStore>().RecordAsync(
            [
                new BounceEvent(BounceKind.Hard, "typo@example.org", Status: "5.1.1"),
                new BounceEvent(BounceKind.Complaint, "never-asked@example.org"),
            ], SuppressionStore.WebhookSource, CancellationToken.None);
        }
        Assert.Equal("bounced", await _database.SubscriberStatusAsync("typo@example.org"));
        Assert.Equal("unsubscribed", await _database.SubscriberStatusAsync("never-asked@example.org"));

        await using (var app = RetainingApp())
        {
            await app.WaitForFreshRoundAsync<RetentionWorker>();
        }

        Assert.Equal(["former@example.org"], await _database.QueryAsync<string>("SELECT email FROM subscribers ORDER BY email"));
        Assert.Equal(0, await _database.ScalarAsync<long>(
            "SELECT count(*) FROM topics WHERE subscriber_id IN (@bounced, @complained)", new { bounced, complained }));
        var suppressions = await _database.QueryAsync<string>("SELECT email FROM suppressions");
        Assert.Equal(
            [.. new[] { SubscriberData.ErasedKey("never-asked@example.org"), SubscriberData.ErasedKey("typo@example.org") }.Order(StringComparer.Ordinal)],
            [.. suppressions.Order(StringComparer.Ordinal)]);
    }

    [Fact]
    public async Task ASignupConfirmedOrMadeAgainSinceItWasFoundIsNotErased()
    {
        var (confirmed, _) = await _database.AddSubscriberAsync("confirmed@example.org", "active", null, "lidar");
        var (again, _) = await _database.AddSubscriberAsync("again@example.org", "pending", null, "lidar");
        await _database.ExecuteAsync("""
            UPDATE subscribers SET confirmation_expires_at = now() - interval '40 days' WHERE id = @confirmed;
            UPDATE subscribers SET confirmation_expires_at = now() + interval '7 days' WHERE id = @again;
            """, new { confirmed, again });
        await using var app = new TestApp(_database);
        var data = app.Services.GetRequiredService<SubscriberData>();
        var expiredBefore = DateTimeOffset.UtcNow - TimeSpan.FromDays(30);

        Assert.False(await data.EraseUnconfirmedAsync(confirmed, expiredBefore, CancellationToken.None));
        Assert.False(await data.EraseUnconfirmedAsync(again, expiredBefore, CancellationToken.None));
        Assert.Equal(2, await _database.ScalarAsync<long>("SELECT count(*) FROM subscribers"));
    }

    [Fact]
    public async Task TopicVectorsNoOneFollowsAreSweptOnceADayNotEveryRound()
    {
        // The app's own worker does its first round, then waits a day: the rounds below are this test's.
        await using var app = RetainingApp(interval: "1.00:00:00");
        var worker = app.Services.GetServices<IHostedService>().OfType<RetentionWorker>().Single();
        await Eventually.TrueAsync(() => worker.CompletedRounds >= 1, "the worker's first round");
        var time = new FakeTimeProvider(DateTimeOffset.UtcNow);
        var retention = new Retention(app.Services.GetRequiredService<NpgsqlDataSource>(), app.Services.GetRequiredService<SubscriberData>(),
            app.Services.GetRequiredService<IOptions<RetentionOptions>>(), time, NullLogger<Retention>.Instance);
        const string orphans = "SELECT topic FROM topic_embeddings ORDER BY topic";

        await _database.ExecuteAsync("INSERT INTO topic_embeddings (topic, model, vector) VALUES ('left by one race', 'test', '{1}')");
        await retention.DeleteDueAsync(CancellationToken.None);
        Assert.Empty(await _database.QueryAsync<string>(orphans));

        // The sweep reads every stored vector: an hour later it is not done again.
        await _database.ExecuteAsync("INSERT INTO topic_embeddings (topic, model, vector) VALUES ('left by another', 'test', '{1}')");
        time.Advance(TimeSpan.FromHours(1));
        await retention.DeleteDueAsync(CancellationToken.None);
        Assert.Equal(["left by another"], await _database.QueryAsync<string>(orphans));

        time.Advance(TimeSpan.FromDays(1));
        await retention.DeleteDueAsync(CancellationToken.None);
        Assert.Empty(await _database.QueryAsync<string>(orphans));
    }

    [Fact]
    public async Task ZeroKeepsEverything()
    {
        var (stale, _) = await _database.AddSubscriberAsync("stale@example.org", "pending", null, "lidar");
        await _database.ExecuteAsync("""
            UPDATE subscribers SET confirmation_expires_at = now() - interval '3 years' WHERE id = @stale;
            INSERT INTO deliveries (subscriber_id, day, papers, status, next_attempt_at, created_at)
            VALUES (@stale, date '2020-01-01', '[]', 'sent', now(), now() - interval '3 years');
            INSERT INTO bounce_events (email, kind, status, source, received_at) VALUES ('stale@example.org', 'soft', '4.2.2', 'imap', now() - interval '3 years');
            """, new { stale });

        await using (var app = RetainingApp(deliveries: "0", unconfirmedSignups: "0", bounceRecords: "0"))
        {
            await app.WaitForFreshRoundAsync<RetentionWorker>();
        }

        Assert.Equal(1, await _database.ScalarAsync<long>("SELECT count(*) FROM subscribers"));
        Assert.Equal(1, await _database.ScalarAsync<long>("SELECT count(*) FROM deliveries"));
        Assert.Equal(1, await _database.ScalarAsync<long>("SELECT count(*) FROM bounce_events"));
    }

    [Fact]
    public async Task KeepingDeliveriesLessThanAMonthIsRefusedAtStart()
    {
        var (exitCode, _, error) = await ServiceBinary.RunAsync(
            ["serve", "--Retention:Deliveries=7.00:00:00", "--Retention:UnconfirmedSignups=-1.00:00:00", "--Retention:BounceRecords=30.00:00:00"],
            new Dictionary<string, string>
            {
                ["ConnectionStrings__Postgres"] = _database.ConnectionString,
                ["App__TokenSecret"] = "a-secret-for-the-command-line-tests-only",
            });

        Assert.Equal(78, exitCode);
        Assert.Contains("Retention:Deliveries must be 0 (kept for good) or at least 30 days", error);
        Assert.Contains("Retention:UnconfirmedSignups must be 0 (kept for good) or a positive time", error);
        Assert.Contains("Retention:BounceRecords must be 0 (kept for good) or between 365 and 36,500 days", error);
    }

    /// <summary>The service's own defaults (a year, a month, a year) unless given, each round a fifth of a second apart.</summary>
    private TestApp RetainingApp(string? deliveries = null, string? unconfirmedSignups = null, string? bounceRecords = null, string interval = "00:00:00.200") =>
        new(_database, settings: new Dictionary<string, string?>
        {
            ["Retention:Deliveries"] = deliveries,
            ["Retention:UnconfirmedSignups"] = unconfirmedSignups,
            ["Retention:BounceRecords"] = bounceRecords,
            ["Retention:Interval"] = interval,
        });
}
