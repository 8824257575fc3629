using System.Net;
using Dapper;
using Microsoft.Extensions.DependencyInjection;
using Subscriptions.Bounces;
using Subscriptions.Digest;
using Subscriptions.Subscribers;
using Subscriptions.Tests.Infrastructure;

namespace Subscriptions.Tests;

/// <summary>A suppressed address gets nothing: not a confirmation when it signs up again, not a digest, planned or already planned.</summary>
public sealed class SuppressionTests : IAsyncLifetime
{
    private static readonly DateOnly Day = new(2026, 11, 25);
    private readonly TestDatabase _database = new();
    private TestSmtpServer _smtp = null!;

    public async Task InitializeAsync()
    {
        await _database.InitializeAsync(); // a database of its own: every active subscriber takes part in a run
        _smtp = await TestSmtpServer.StartNewAsync();
        await _database.SaveDayAsync(Day, TestDatabase.LidarPaper);
    }

    public async Task DisposeAsync()
    {
        await _smtp.DisposeAsync();
        await _database.DisposeAsync();
        await PostgresServer.DropDatabaseAsync(_database.ConnectionString);
    }

    [Fact]
    public async Task ASuppressedAddressSigningUpAgainGetsTheSameAnswerAndNoEmail()
    {
        await _database.AddSubscriberAsync("bounced@example.org", "bounced", null, "lidar");
        await SuppressAsync("bounced@example.org", "hard_bounce");
        await SuppressAsync("never-seen@example.org", "complaint");
        await using var app = new TestApp(_database, _smtp);
        using var client = app.CreatePlainClient();

        var fresh = await client.SignUpAsync("fresh@example.org", "lidar");
        var again = await client.SignUpAsync("Bounced@Example.org", "lidar");
        var unknown = await client.SignUpAsync("never-seen@example.org", "lidar");

        Assert.All([fresh, again, unknown], response => Assert.Equal(HttpStatusCode.Accepted, response.StatusCode));
        var expected = await fresh.Content.ReadAsStringAsync();
        Assert.Equal(expected, await again.Content.ReadAsStringAsync());
        Assert.Equal(expected, await unknown.Content.ReadAsStringAsync());

        await _smtp.WaitForMessageToAsync("fresh@example.org");
        await app.WaitForFreshRoundAsync<EmailOutboxWorker>();
        Assert.Empty(_smtp.MessagesTo("bounced@example.org"));
        Assert.Empty(_smtp.MessagesTo("never-seen@example.org"));
        Assert.Single(_smtp.Received);
    }

    [Fact]
    public async Task OnlyAnAddressNotSuppressedBeforeIsReportedAsSuppressed()
    {
        await using var app = new TestApp(_database, _smtp);
        var store = app.Services.GetRequiredService<SuppressionStore>();

        var first = await store.RecordAsync([new BounceEvent(BounceKind.Hard, "twice@example.org", Status: "5.1.1")], SuppressionStore.WebhookSource, CancellationToken.None);
        // The same bounce by the other way (a DSN in the mailbox after the provider's webhook), or a later one.
        var second = await store.RecordAsync(
            [new BounceEvent(BounceKind.Hard, "twice@example.org", Status: "5.1.1"), new BounceEvent(BounceKind.Complaint, "new@example.org")],
            SuppressionStore.ImapSource, CancellationToken.None);

        Assert.Equal(["twice@example.org"], first.Suppressed);
        Assert.Equal(["new@example.org"], second.Suppressed);
        Assert.Equal(2, await _database.ScalarAsync<long>("SELECT count(*) FROM suppressions"));
    }

    [Fact]
    public async Task TwoSoftBouncesOfAnAddressRecordedAtOnceCountEachOther()
    {
        await using var app = new TestApp(_database, _smtp);
        var store = app.Services.GetRequiredService<SuppressionStore>();
        // One soft bounce already: the limit is 3 within 14 days.
        await _database.ExecuteAsync("INSERT INTO bounce_events (email, kind, status, source, received_at) VALUES ('full@example.org', 'soft', '4.2.2', 'imap', now())");
        // Holds both recordings after they have recorded their event, before their verdicts (which suppress: they wait for this).
        await using var holder = await _database.DataSource.OpenConnectionAsync();
        await using var holding = await holder.BeginTransactionAsync();
        await holder.ExecuteAsync("LOCK TABLE suppressions IN ACCESS EXCLUSIVE MODE", transaction: holding);

        var recordings = new[] { SuppressionStore.WebhookSource, SuppressionStore.ImapSource }.Select(source =>
            Task.Run(() => store.RecordAsync([new BounceEvent(BounceKind.Soft, "full@example.org", Status: "4.2.2")], source, CancellationToken.None))).ToList();
        // Both at their verdict (before), or one there and the other waiting for it (now).
        await Eventually.TrueAsync(async () => await _database.SessionsWaitingAsync("%WITH verdicts AS%") + await _database.SessionsWaitingAsync("%bounce_address%") == 2,
            "both recordings to wait");
        await holding.CommitAsync();

        Assert.Equal(["full@example.org"], (await Task.WhenAll(recordings)).SelectMany(outcome => outcome.Suppressed));
        Assert.Equal("soft_bounces", await _database.ScalarAsync<string>("SELECT reason FROM suppressions WHERE email = 'full@example.org'"));
    }

    [Fact]
    public async Task AConfirmationQueuedBeforeTheSuppressionIsNotSent()
    {
        var (id, _) = await _database.AddSubscriberAsync("queued@example.org", "pending", null, "lidar");
        await _database.ExecuteAsync("""
            UPDATE subscribers SET confirmation_nonce = @nonce, confirmation_expires_at = now() + interval '1 day' WHERE id = @id;
            INSERT INTO email_outbox (subscriber_id, kind, next_attempt_at, created_at) VALUES (@id, 'confirmation', now(), now());
            """, new { id, nonce = LinkTokens.NewNonce() });
        await SuppressAsync("queued@example.org", "operator");

        await using var app = new TestApp(_database, _smtp);
        await app.WaitForFreshRoundAsync<EmailOutboxWorker>();

        Assert.Empty(_smtp.Received);
        Assert.Equal("superseded", await _database.ScalarAsync<string>("SELECT status FROM email_outbox WHERE subscriber_id = @id", new { id }));
    }

    [Fact]
    public async Task ASuppressedSubscriberGetsNoDigestAndOneSuppressedAfterPlanningIsSkipped()
    {
        await _database.AddSubscriberAsync("suppressed@example.org", "active", null, "lidar");
        await _database.AddSubscriberAsync("late@example.org", "active", null, "lidar");
        await _database.AddSubscriberAsync("reader@example.org", "active", null, "lidar");
        await SuppressAsync("suppressed@example.org", "operator");
        await using var app = new TestApp(_database, _smtp);
        var runner = app.Services.GetRequiredService<DigestRunner>();

        await runner.PlanDayAsync(Day, ingestFirst: false, _ => { }, CancellationToken.None);
        await SuppressAsync("LATE@example.org", "operator");
        var summary = await runner.RunAsync(Day, ingestFirst: false, dryRun: false, _ => { }, CancellationToken.None);

        Assert.Equal((1, 1, 1), (summary.Matched, summary.Sent, summary.Skipped));
        Assert.Single(_smtp.MessagesTo("reader@example.org"));
        Assert.Single(_smtp.Received);
        Assert.Equal(0, await _database.ScalarAsync<long>(
            "SELECT count(*) FROM deliveries d JOIN subscribers s ON s.id = d.subscriber_id WHERE s.email = 'suppressed@example.org'"));
    }

    private Task SuppressAsync(string email, string reason) => _database.ExecuteAsync(
        "INSERT INTO suppressions (email, reason, created_at) VALUES (lower(@email), @reason, now())", new { email, reason });
}
