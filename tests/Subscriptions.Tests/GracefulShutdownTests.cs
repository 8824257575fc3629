using System.Collections.Concurrent;
using System.Diagnostics;
using System.Globalization;
using Dapper;
using Microsoft.Extensions.DependencyInjection;
using Subscriptions.Digest;
using Subscriptions.Tests.Infrastructure;

namespace Subscriptions.Tests;

/// <summary>SIGTERM mid-send, as Kubernetes and systemd send it: nothing stranded, nothing doubled, the others carry on.</summary>
public sealed class GracefulShutdownTests : IAsyncLifetime
{
    private static readonly DateOnly Day = new(2026, 11, 25);
    private readonly TestDatabase _database = new();
    private TestSmtpServer _smtp = null!;

    public async Task InitializeAsync()
    {
        await _database.InitializeAsync();
        _smtp = await TestSmtpServer.StartNewAsync();
    }

    public async Task DisposeAsync()
    {
        await _smtp.DisposeAsync();
        await _database.DisposeAsync();
        await PostgresServer.DropDatabaseAsync(_database.ConnectionString);
    }

    [Fact]
    public async Task AnInstanceStoppedMidSendFinishesItsMessageHandsItsClaimsBackAndTheOtherFinishesTheDay()
    {
        const int subscribers = 40;
        using var first = await StartUntilHeldAsync(_database, "reader", subscribers, plan: true, accepted: 5, Environment(claimTimeout: "00:10:00"));
        Assert.True(await _database.ScalarAsync<long>("SELECT count(*) FROM deliveries WHERE status = 'sending'") > _smtp.Held,
            "The instance holds claims beyond its messages in flight.");

        first.Terminate();
        await first.WaitAsync(() => first.Output.Any(line => line.Contains("Application is shutting down", StringComparison.Ordinal)),
            "the first instance to begin shutting down", TimeSpan.FromSeconds(10));
        _smtp.AcceptHeld(); // the messages in flight complete while it stops
        var clock = Stopwatch.StartNew();
        Assert.True(await first.WaitForExitAsync(TimeSpan.FromSeconds(40)), "The instance stopped within its shutdown timeout.");
        Assert.Equal(0, first.ExitCode);

        var afterStop = _smtp.Received.Count;
        Assert.Equal(afterStop, await _database.ScalarAsync<long>("SELECT count(*) FROM deliveries WHERE status = 'sent'"));
        Assert.Equal(0, await _database.ScalarAsync<long>("SELECT count(*) FROM deliveries WHERE status = 'sending'"));
        Assert.True(afterStop < subscribers, "The stopped instance left deliveries for others.");

        // Another instance finishes the day within its poll interval, not after the claim timeout.
        using var second = new RunningInstance(Environment(claimTimeout: "00:10:00"));
        await second.WaitAsync(() => _smtp.Received.Count >= subscribers,
            $"every one of the {subscribers} subscribers to be served", TimeSpan.FromSeconds(60));
        Assert.All(Enumerable.Range(0, subscribers), i => Assert.Single(_smtp.MessagesTo($"reader{i}@example.org")));
        await _database.WaitForSentDeliveriesAsync(subscribers);
        Assert.Equal(subscribers, _smtp.Received.Count);
        second.Terminate();
        Assert.True(await second.WaitForExitAsync(TimeSpan.FromSeconds(40)));
    }

    [Fact]
    public async Task AStoppedInstanceHandsItsClaimsBackWhileItsMessagesInFlightAreStillGoing()
    {
        using var first = await StartUntilHeldAsync(_database, "early", 40, plan: true, accepted: 5, Environment(claimTimeout: "00:10:00"));
        await first.WaitAsync(() => _smtp.Held == 2, "a message in flight on each of the 2 connections", TimeSpan.FromSeconds(15));
        first.Terminate();

        // The relay still holds what is in flight: the rest of each batch (5) is handed back now, not once those messages are
        // done (a send can take longer than the shutdown timeout, and the claims then stayed for Digest:ClaimTimeout). What
        // stays is each of the 4 senders' (2 per connection) message begun: at the relay, or waiting for a connection.
        const string claimed = "SELECT count(*) FROM deliveries WHERE status = 'sending'";
        await first.WaitAsync(() => _database.ScalarAsync<long>(claimed).GetAwaiter().GetResult() <= 4,
            "only the messages begun to stay claimed", TimeSpan.FromSeconds(15));
        Assert.True(_smtp.Held > 0, "The relay still holds the messages in flight.");
        _smtp.AcceptHeld();
        Assert.True(await first.WaitForExitAsync(TimeSpan.FromSeconds(40)), "The instance stopped within its shutdown timeout.");
        Assert.Equal(0, await _database.ScalarAsync<long>(claimed));
        Assert.Equal(_smtp.Received.Count, await _database.ScalarAsync<long>("SELECT count(*) FROM deliveries WHERE status = 'sent'"));
        // The two messages that waited for a connection were not in flight: they went back too, unsent.
        Assert.Equal(5 + 2, _smtp.Received.Count);
    }

    [Fact]
    public async Task TheDigestVerbStoppedWithSigtermFinishesItsMessagesAndHandsItsClaimsBack()
    {
        using var run = await StartUntilHeldAsync(_database, "verb", 12, plan: false, accepted: 4, Environment(claimTimeout: "00:10:00"),
            ["digest", "--date", "2026-11-25", "--no-ingest"]);
        run.Terminate();
        await run.WaitAsync(() => run.Output.Any(line => line.Contains("Stopping after the messages in flight", StringComparison.Ordinal)),
            "the run to begin stopping", TimeSpan.FromSeconds(10));
        _smtp.AcceptHeld();

        Assert.True(await run.WaitForExitAsync(TimeSpan.FromSeconds(40)), "The run stopped.");
        Assert.Equal(130, run.ExitCode);
        Assert.Equal(0, await _database.ScalarAsync<long>("SELECT count(*) FROM deliveries WHERE status = 'sending'"));
        Assert.Equal(_smtp.Received.Count, await _database.ScalarAsync<long>("SELECT count(*) FROM deliveries WHERE status = 'sent'"));
        Assert.True(_smtp.Received.Count < 12, "Stopped before the end of the day.");
    }

    /// <summary>
    /// The database stopped, or hung (up, answering nothing: every statement and connection attempt waits). Hung, Quartz's
    /// shutdown waits on it past the bound, and its misfire and cluster threads kept the process alive after Main had
    /// returned, until they were background threads (the stopped variant failed that way once in a full run, when Quartz
    /// took longer to stop).
    /// </summary>
    [Theory]
    [InlineData("serve", false)]
    [InlineData("serve", true)]
    [InlineData("digest", false)]
    public async Task AnInstanceStoppedWhileTheDatabaseAndTheMailServerAreGoneStillExitsWithinItsShutdownTimeout(string verb, bool databaseHung)
    {
        await using var database = await TestDatabase.OnOwnClusterAsync(); // its own: this test stops it
        var environment = Environment(claimTimeout: "00:10:00");
        environment["ConnectionStrings__Postgres"] = database.ConnectionString;
        environment["HostOptions__ShutdownTimeout"] = "00:00:05";

        using var instance = await StartUntilHeldAsync(database, "gone", 20, plan: verb == "serve", accepted: 3, environment,
            verb == "serve" ? null : [verb, "--date", "2026-11-25", "--no-ingest"]);
        // And the mail server keeps holding what is in flight.
        if (databaseHung)
        {
            database.Cluster.Hang(true);
        }
        else
        {
            database.Cluster.Stop();
        }

        try
        {
            var clock = Stopwatch.StartNew();
            instance.Terminate();

            // Well past the 5 s, for a loaded test machine: what this guards against is an instance that never exits.
            Assert.True(await instance.WaitForExitAsync(TimeSpan.FromSeconds(40)),
                $"The instance should exit soon after its 5 s shutdown timeout; still running after {clock.Elapsed.TotalSeconds:F0} s:\n" +
                // Its log lines without the stack traces' frames: one logged exception's frames filled the last 40 lines once.
                string.Join('\n', instance.Output.Where(line => !line.TrimStart().StartsWith("at ", StringComparison.Ordinal)).TakeLast(40)));
            Assert.Equal(verb == "serve" ? 0 : 130, instance.ExitCode);
        }
        finally
        {
            if (databaseHung)
            {
                database.Cluster.Hang(false);
            }
        }
    }

    [Fact]
    public async Task AnInstanceStoppedWhilePlanningASlotHandsTheFiringToTheNextInstance()
    {
        // A subscriber due this hour, and the hour before as the last slot the schedule planned. The instances below fire
        // the slot of the hour they run in: started in an hour's last minutes, they would fire the next one (its subscriber
        // not due there, planning would find nothing to wait in), so the test waits for the hour to turn.
        var untilNextHour = Digest.DeliverySlots.SlotOf(DateTimeOffset.UtcNow) + Digest.DeliverySlots.Length - DateTimeOffset.UtcNow;
        if (untilNextHour < TimeSpan.FromMinutes(4))
        {
            await Task.Delay(untilNextHour + TimeSpan.FromSeconds(2));
        }
        var slot = Digest.DeliverySlots.SlotOf(DateTimeOffset.UtcNow);
        var (id, _) = await _database.AddSubscriberAsync("recovered@example.org", "active", maxPapers: null, "lidar");
        await _database.ExecuteAsync("UPDATE subscribers SET time_zone = 'UTC', delivery_hour = @hour WHERE id = @id", new { id, hour = slot.Hour });
        // On the slot's date, and the day before: a slot before the default time (03:00 UTC below) has the papers of the day
        // before. With the slot's date alone, the test failed from midnight to 03:00 UTC: nothing matched, nothing was planned.
        await _database.SaveDayAsync(DateOnly.FromDateTime(slot.UtcDateTime), TestDatabase.LidarPaper);
        await _database.SaveDayAsync(DateOnly.FromDateTime(slot.UtcDateTime).AddDays(-1), TestDatabase.LidarPaper);
        await _database.ExecuteAsync("INSERT INTO digest_slots (slot, planned_at, matched, planned, by_schedule) VALUES (@previous, now(), 0, 0, true)",
            new { previous = slot - Digest.DeliverySlots.Length });
        var environment = Environment(claimTimeout: "00:10:00");
        environment["Digest__Schedule"] = "0 0 3 * * ?";
        environment["Papers__Sources"] = "file";
        environment["Papers__File__Path"] = Path.Combine(AppContext.BaseDirectory, "Payloads", "trending-page.txt");
        // Long, so that an instance waiting for its firing (blocked below until the test ends) is far from one that stops it.
        environment["HostOptions__ShutdownTimeout"] = "00:00:30";
        const string trigger = "SELECT count(*) FROM qrtz_triggers WHERE trigger_name = 'daily-digest'";
        using (var scheduling = new RunningInstance(environment))
        {
            await scheduling.WaitAsync(() => _database.ScalarAsync<long>(trigger).GetAwaiter().GetResult() == 1, "the hourly trigger to be stored", TimeSpan.FromSeconds(60));
            scheduling.Terminate();
            Assert.True(await scheduling.WaitForExitAsync(TimeSpan.FromSeconds(20)));
        }

        // Planning waits: a batch's lock is held by an erasure that takes its time. The trigger is due: the instance fires it as it starts.
        await using var erasure = await _database.DataSource.OpenConnectionAsync();
        await using var erasing = await erasure.BeginTransactionAsync();
        await erasure.ExecuteAsync("SELECT pg_advisory_xact_lock(hashtextextended('subscriptions.subscriber_deletion', 0))", transaction: erasing);
        await _database.ExecuteAsync("UPDATE qrtz_triggers SET next_fire_time = @due WHERE trigger_name = 'daily-digest'",
            new { due = DateTimeOffset.UtcNow.AddMinutes(-1).UtcTicks });
        using var first = new RunningInstance(environment);
        await first.WaitAsync(() => _database.ScalarAsync<long>(
                "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() AND wait_event = 'advisory'").GetAwaiter().GetResult() == 1,
            "the firing to wait in planning", TimeSpan.FromSeconds(60));
        first.Terminate();
        Assert.True(await first.WaitForExitAsync(TimeSpan.FromSeconds(20)), "The instance stopped its firing rather than waiting for it.");
        Assert.Equal(0, first.ExitCode);
        await erasing.RollbackAsync();

        // Another instance runs the firing now, not at the next hour.
        using var second = new RunningInstance(environment);
        await second.WaitAsync(() => _smtp.MessagesTo("recovered@example.org").Count == 1, "the handed-back firing's digest", TimeSpan.FromSeconds(60));
        Assert.Equal(1, await _database.ScalarAsync<long>("SELECT count(*) FROM digest_slots WHERE slot = @slot", new { slot }));
    }

    /// <summary>
    /// <paramref name="subscribers"/> subscribers on lidar and the day (<see cref="SaveDayAsync"/>), then <c>serve</c> (or the verb
    /// of <paramref name="arguments"/>), returned once the relay has accepted <paramref name="accepted"/> messages and holds the
    /// next ones in flight.
    /// </summary>
    private async Task<RunningInstance> StartUntilHeldAsync(
        TestDatabase database, string prefix, int subscribers, bool plan, int accepted, IReadOnlyDictionary<string, string> environment, string[]? arguments = null)
    {
        for (var i = 0; i < subscribers; i++)
        {
            await database.AddSubscriberAsync($"{prefix}{i}@example.org", "active", maxPapers: null, "lidar");
        }
        await SaveDayAsync(database, plan);
        _smtp.HoldAfter(accepted);
        var instance = new RunningInstance(environment, arguments);
        try
        {
            await instance.WaitAsync(() => _smtp.Received.Count == accepted && _smtp.Held > 0,
                $"the instance to have {accepted} messages accepted and more in flight", TimeSpan.FromSeconds(60));
            return instance;
        }
        catch
        {
            instance.Dispose();
            throw;
        }
    }

    /// <summary>The day's one paper (on lidar), and, with <paramref name="plan"/>, the day's deliveries, sent by no one yet.</summary>
    private static async Task SaveDayAsync(TestDatabase database, bool plan)
    {
        await database.SaveDayAsync(Day, TestDatabase.LidarPaper);
        if (plan)
        {
            await using var app = new TestApp(database);
            await app.Services.GetRequiredService<DigestRunner>().PlanDayAsync(Day, ingestFirst: false, _ => { }, CancellationToken.None);
        }
    }

    private Dictionary<string, string> Environment(string claimTimeout) => new()
    {
        ["ConnectionStrings__Postgres"] = _database.ConnectionString,
        ["App__TokenSecret"] = "a-secret-for-the-shutdown-tests-only",
        ["urls"] = "http://127.0.0.1:0",
        ["Smtp__Host"] = "127.0.0.1",
        ["Smtp__Port"] = _smtp.Port.ToString(CultureInfo.InvariantCulture),
        ["Smtp__Security"] = "None",
        ["Smtp__Connections"] = "2",
        ["Digest__Schedule"] = "0 0 3 1 1 ? 2099", // the trigger never fires here; the day is planned by the test
        ["Digest__BatchSize"] = "5",
        ["Digest__PollInterval"] = "00:00:00.200",
        ["Digest__ClaimTimeout"] = claimTimeout,
        ["Mail__PollInterval"] = "00:00:00.200",
    };

    /// <summary>The service binary running <c>serve</c> (or another verb), with its console output collected.</summary>
    private sealed class RunningInstance : IDisposable
    {
        private readonly Process _process;
        private readonly ConcurrentQueue<string> _output = new();

        public RunningInstance(IReadOnlyDictionary<string, string> environment, string[]? arguments = null)
        {
            _process = ServiceBinary.Start(arguments ?? ["serve"], environment);
            _process.OutputDataReceived += (_, e) => _output.Enqueue(e.Data ?? "");
            _process.ErrorDataReceived += (_, e) => _output.Enqueue(e.Data ?? "");
            _process.BeginOutputReadLine();
            _process.BeginErrorReadLine();
        }

        public IReadOnlyCollection<string> Output => _output;

        public int ExitCode => _process.ExitCode;

        /// <summary><see cref="Eventually.TrueAsync(Func{bool}, string, TimeSpan?)"/>, with the instance's last output in the failure.</summary>
        public async Task WaitAsync(Func<bool> condition, string waitingFor, TimeSpan timeout)
        {
            try
            {
                await Eventually.TrueAsync(condition, waitingFor, timeout);
            }
            catch (TimeoutException e)
            {
                throw new TimeoutException($"{e.Message}\nThe instance's last output:\n{string.Join('\n', _output.TakeLast(30))}", e);
            }
        }

        /// <summary>SIGTERM, what Kubernetes and systemd send.</summary>
        public void Terminate()
        {
            using var kill = Process.Start("kill", ["-TERM", _process.Id.ToString(CultureInfo.InvariantCulture)]);
            kill.WaitForExit();
        }

        public async Task<bool> WaitForExitAsync(TimeSpan limit)
        {
            using var timeout = new CancellationTokenSource(limit);
            try
            {
                await _process.WaitForExitAsync(timeout.Token);
                return true;
            }
            catch (OperationCanceledException)
            {
                return false;
            }
        }

        public void Dispose()
        {
            if (!_process.HasExited)
            {
                _process.Kill(entireProcessTree: true);
                _process.WaitForExit();
            }
            _process.Dispose();
        }
    }
}
