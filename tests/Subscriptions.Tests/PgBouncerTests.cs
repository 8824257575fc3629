using System.Net;
using Dapper;
using Microsoft.Extensions.DependencyInjection;
using Npgsql;
using Subscriptions.Bounces;
using Subscriptions.Digest;
using Subscriptions.Tests.Infrastructure;

namespace Subscriptions.Tests;

/// <summary>
/// The service behind a real PgBouncer in transaction mode, set up as docs/operations.md says: consecutive transactions of
/// one connection may run on different server connections, and nothing resets a server connection between clients.
/// </summary>
public sealed class PgBouncerTests : IAsyncLifetime
{
    private static readonly DateOnly Day = new(2026, 11, 25);
    private static readonly TimeSpan Patience = TimeSpan.FromSeconds(60);
    private readonly TestDatabase _database = new(); // a database of its own: every active subscriber takes part in a run
    private TestSmtpServer _smtp = null!;
    private PgBouncerServer _bouncer = null!;

    public async Task InitializeAsync()
    {
        await _database.InitializeAsync();
        _smtp = await TestSmtpServer.StartNewAsync();
        _bouncer = await PgBouncerServer.StartAsync(_database.ConnectionString);
    }

    public async Task DisposeAsync()
    {
        await _bouncer.DisposeAsync();
        await _smtp.DisposeAsync();
        await _database.DisposeAsync();
        await PostgresServer.DropDatabaseAsync(_database.ConnectionString);
    }

    [Fact]
    public async Task InstancesMigrateTakeSignupsPlanAndSendThroughItLeavingNothingHeldOrSet()
    {
        await _database.SaveDayAsync(Day, TestDatabase.LidarPaper);
        for (var i = 0; i < 10; i++)
        {
            await _database.AddSubscriberAsync($"reader{i}@example.org", "active", maxPapers: null, "lidar");
        }
        var settings = new Dictionary<string, string?> { ["ConnectionStrings:Postgres"] = _bouncer.ConnectionString };

        // Each instance takes the migrations' lock as it starts: the second would wait for ever for one the first left held.
        await using (var first = new TestApp(_database, _smtp, settings: settings))
        {
            await Task.Run(() => first.Services).WaitAsync(Patience);
        }
        Assert.Equal(0, await SessionLocksHeldAsync());
        // This one with the schedule on: Quartz's clustered job store checks in through PgBouncer too, and the background
        // senders may take part in the run below (so the emails are counted where they arrive, not by who sent them).
        settings["Digest:Enabled"] = "true";
        await using var app = new TestApp(_database, _smtp, settings: settings);
        await Task.Run(() => app.Services).WaitAsync(Patience);

        var summary = await app.Services.GetRequiredService<DigestRunner>()
            .RunAsync(Day, ingestFirst: false, dryRun: false, _ => { }, CancellationToken.None).WaitAsync(Patience);

        Assert.Equal(10, summary.Planned);
        await _database.WaitForSentDeliveriesAsync(10);
        Assert.Equal(10, _smtp.Received.Count); // before the signup below adds its confirmation
        Assert.Equal(1, await _database.ScalarAsync<long>("SELECT count(*) FROM qrtz_scheduler_state WHERE sched_name = 'Subscriptions'"));
        // A signup, its confirmation email (the outbox's worker) and its confirmation, through it as well.
        using var web = app.CreatePlainClient();
        Assert.Equal(HttpStatusCode.Accepted, (await web.SignUpAsync("newcomer@example.org", "lidar")).StatusCode);
        var confirmation = await _smtp.WaitForMessageToAsync("newcomer@example.org");
        Assert.Equal(HttpStatusCode.OK, (await web.GetAsync(TestApp.LinkIn(confirmation, "/subscriptions/confirm"))).StatusCode);
        Assert.Equal("active", await _database.SubscriberStatusAsync("newcomer@example.org"));
        Assert.Equal(0, await SessionLocksHeldAsync());
        // Every server connection the pool holds, in turn: none keeps a setting the service changed.
        await using var client = new NpgsqlConnection($"{_bouncer.ConnectionString};Pooling=false");
        await client.OpenAsync();
        var servers = await _database.ScalarAsync<long>(
            "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() AND backend_type = 'client backend'");
        for (var i = 0; i < 2 * servers; i++)
        {
            Assert.Equal(("on", "on"), await client.QuerySingleAsync<(string, string)>("SELECT current_setting('jit'), current_setting('enable_seqscan')"));
        }
    }

    [Fact]
    public async Task TheBounceMailboxIsReadRoundAfterRoundThroughIt()
    {
        var dovecot = new DovecotServer();
        await dovecot.InitializeAsync();
        try
        {
            await _database.AddSubscriberAsync("gmail-hard@example.org", "active", maxPapers: null, "lidar");
            await _database.AddSubscriberAsync("exim-hard@example.org", "active", maxPapers: null, "lidar");
            var settings = new Dictionary<string, string?>(dovecot.Settings)
            {
                ["ConnectionStrings:Postgres"] = _bouncer.ConnectionString,
                ["Bounces:PollInterval"] = "00:00:00.100",
            };

            // Each round takes the readers' lock: one that a round left held would keep the next ones from reading.
            await using (var app = new TestApp(_database, settings: settings))
            {
                foreach (var (sample, email) in new[] { ("gmail-no-such-user.eml", "gmail-hard@example.org"), ("exim-rejected.eml", "exim-hard@example.org") })
                {
                    dovecot.Deliver(Path.Combine(AppContext.BaseDirectory, "Payloads", "bounces", sample));
                    await app.WaitForFreshRoundAsync<BounceMailboxWorker>();
                    Assert.Equal("bounced", await _database.SubscriberStatusAsync(email));
                }
            }
            Assert.Equal(0, await SessionLocksHeldAsync());
        }
        finally
        {
            await dovecot.DisposeAsync();
        }
    }

    /// <summary>Advisory locks held by server connections that are in no transaction: taken for the session, and left.</summary>
    private Task<long> SessionLocksHeldAsync() => _database.ScalarAsync<long>("""
        SELECT count(*) FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid
        WHERE l.locktype = 'advisory' AND l.granted AND a.datname = current_database() AND a.state = 'idle'
        """);
}
