using Microsoft.Extensions.DependencyInjection;
using Quartz;
using Subscriptions.Digest;
using Subscriptions.Tests.Infrastructure;

namespace Subscriptions.Tests;

/// <summary>The hourly trigger: Quartz's clustered job store in the real _database.</summary>
public sealed class DigestScheduleTests : IAsyncLifetime
{
    private readonly TestDatabase _database = new(); // a database of its own: every due subscriber takes part in a slot

    public Task InitializeAsync() => _database.InitializeAsync();

    public async Task DisposeAsync()
    {
        await _database.DisposeAsync();
        await PostgresServer.DropDatabaseAsync(_database.ConnectionString);
    }

    [Theory]
    [InlineData("0 0 7 * * ?", "UTC", "2026-11-25T09:00:00Z", "2026-11-25")] // fired on time or late the same day
    [InlineData("0 0 7 * * ?", "UTC", "2026-11-26T06:59:00Z", "2026-11-25")] // the next morning, before its own run: yesterday's
    [InlineData("0 0 7 * * ?", "Europe/Berlin", "2026-11-25T05:30:00Z", "2026-11-24")] // 06:30 in Berlin
    [InlineData("0 0 7 * * ?", "Europe/Berlin", "2026-11-25T06:00:00Z", "2026-11-25")] // 07:00 in Berlin
    [InlineData("0 30 23 * * ?", "America/New_York", "2026-11-26T04:31:00Z", "2026-11-25")] // 23:31 in New York
    [InlineData("0 30 7 * * ?", "UTC", "2026-11-25T07:10:00Z", "2026-11-25")] // the 07:00 slot has planned the day: minutes are not used
    [InlineData("0 0 7 ? * MON-FRI", "UTC", "2026-11-28T09:00:00Z", "2026-11-28")] // a Saturday's slot comes too: day fields are not used
    public void AFiringDigestsTheDayOfItsLatestScheduledTime(string schedule, string timeZone, string now, string expected)
    {
        var options = new DigestOptions { Schedule = schedule, TimeZone = timeZone };

        var day = DigestSchedule.DayOfFiring(options, DateTimeOffset.Parse(now, System.Globalization.CultureInfo.InvariantCulture));

        Assert.Equal(DateOnly.Parse(expected, System.Globalization.CultureInfo.InvariantCulture), day);
    }

    [Fact]
    public async Task TheHourlyTriggerPlansTheDueSlotAndTheWorkerSendsIt()
    {
        await using var smtp = await TestSmtpServer.StartNewAsync();
        // The app's clock (Quartz's too) says 07:20 UTC on a day in the future, so the trigger made due below is a misfire.
        var time = new ShiftedTime(new DateTimeOffset(2030, 1, 9, 7, 20, 0, TimeSpan.Zero));
        var day = new DateOnly(2030, 1, 9);
        await _database.AddSubscriberAsync("scheduled@example.org", "active", maxPapers: null, "dexterous manipulation"); // the default time: 07:00 UTC
        await AddScheduledAsync("berlin8@example.org", "Europe/Berlin", 8, "dexterous manipulation"); // 07:00 UTC in November
        await AddScheduledAsync("berlin9@example.org", "Europe/Berlin", 9, "dexterous manipulation"); // an hour later
        var settings = new Dictionary<string, string?>
        {
            ["Digest:Enabled"] = "true",
            ["Digest:Schedule"] = "0 0 7 * * ?",
            ["Papers:Sources"] = "file",
            ["Papers:File:Path"] = Path.Combine(AppContext.BaseDirectory, "Payloads", "trending-page.txt"),
        };
        await using (var first = new TestApp(_database, smtp, time, settings))
        {
            _ = first.Services; // starts, and schedules the hourly trigger
        }
        Assert.Equal(1, await _database.ScalarAsync<long>(
            "SELECT count(*) FROM qrtz_cron_triggers WHERE sched_name = 'Subscriptions' AND cron_expression = '0 0 * * * ?' AND time_zone_id = 'UTC'"));
        // Due long ago for that clock: the second instance fires it once as it starts.
        await _database.ExecuteAsync("UPDATE qrtz_triggers SET next_fire_time = @due WHERE trigger_name = 'daily-digest'",
            new { due = DateTimeOffset.UtcNow.AddMinutes(-3).UtcTicks });
        var firedBefore = await PreviousFireTimeAsync();

        await using var app = new TestApp(_database, smtp, time, settings);
        _ = app.Services;

        var message = await smtp.WaitForMessageToAsync("scheduled@example.org", TimeSpan.FromSeconds(30));
        Assert.Contains("Diffusion Policies for Dexterous Manipulation", message.TextBody);
        await smtp.WaitForMessageToAsync("berlin8@example.org", TimeSpan.FromSeconds(30));
        await WaitForFiringFinishedAsync(app, firedBefore);
        await app.WaitForFreshRoundAsync<DeliveryWorker>();
        Assert.Empty(smtp.MessagesTo("berlin9@example.org"));
        Assert.True(await _database.ScalarAsync<long>("SELECT count(*) FROM qrtz_scheduler_state WHERE sched_name = 'Subscriptions'") >= 1);
        // 07:00 UTC is the operator's default time, so that slot ingested the configured file for the day before planning.
        Assert.True(await _database.ScalarAsync<long>("SELECT count(*) FROM paper_days WHERE source = 'file' AND day = @day", new { day }) >= 3);
        Assert.Equal(new DateTime(2030, 1, 9, 7, 0, 0, DateTimeKind.Utc), await _database.ScalarAsync<DateTime>("SELECT max(slot) FROM digest_slots"));
    }

    [Theory]
    [InlineData(null)]
    [InlineData("2030-01-10T12:00:00Z")] // an operator's `digest --at` of a later hour, before the outage: not the last slot the schedule planned
    [InlineData("2030-01-10T07:00:00Z")] // an operator's `digest` of the day during the outage (its default slot): nor is this
    public async Task SlotsMissedWhileEveryInstanceWasDownArePlannedOnceWhenOneComesBack(string? plannedAhead)
    {
        await using var smtp = await TestSmtpServer.StartNewAsync();
        var time = new ShiftedTime(new DateTimeOffset(2030, 1, 10, 9, 20, 0, TimeSpan.Zero));
        var settings = new Dictionary<string, string?>
        {
            ["Digest:Enabled"] = "true",
            ["Digest:Schedule"] = "0 0 7 * * ?",
            ["Papers:Sources"] = "file",
            ["Papers:File:Path"] = Path.Combine(AppContext.BaseDirectory, "Payloads", "trending-page.txt"),
        };
        // One subscriber per UTC hour from 05:00 to 10:00; the last slot planned was 05:00, then every instance went down.
        // Until the 07:00 slot ingests the 10th's papers (the file), the latest stored are the 9th's.
        for (var hour = 5; hour <= 10; hour++)
        {
            await AddScheduledAsync($"missed{hour}@example.org", "UTC", hour, "lidar OR \"dexterous manipulation\"");
        }
        await _database.SaveDayAsync(new DateOnly(2030, 1, 9), TestDatabase.LidarPaper);
        await _database.ExecuteAsync("INSERT INTO digest_slots (slot, planned_at, matched, planned, by_schedule) VALUES ('2030-01-10T05:00:00Z', now(), 0, 0, true)");
        if (plannedAhead is not null)
        {
            await _database.ExecuteAsync("INSERT INTO digest_slots (slot, planned_at, matched, planned, by_schedule) VALUES (@plannedAhead::timestamptz, now(), 0, 0, false)",
                new { plannedAhead });
        }

        await using (var first = new TestApp(_database, smtp, time, settings))
        {
            _ = first.Services;
        }
        // The trigger was due two hours ago, when nothing ran.
        await _database.ExecuteAsync("UPDATE qrtz_triggers SET next_fire_time = @due WHERE trigger_name = 'daily-digest'",
            new { due = DateTimeOffset.UtcNow.AddHours(-2).UtcTicks });

        var firedBefore = await PreviousFireTimeAsync();
        await using var second = new TestApp(_database, smtp, time, settings);
        _ = second.Services;

        // 06:00, 07:00 (the default slot, which ingests the day's papers), 08:00 and 09:00: each once, in one firing.
        foreach (var hour in new[] { 6, 7, 8, 9 })
        {
            var message = await smtp.WaitForMessageToAsync($"missed{hour}@example.org", TimeSpan.FromSeconds(30));
            Assert.EndsWith("10 Jan 2030", message.Subject, StringComparison.Ordinal);
            Assert.Contains(hour == 6 ? "Lidar Odometry at Night" : "Diffusion Policies for Dexterous Manipulation", message.TextBody);
        }
        await WaitForFiringFinishedAsync(second, firedBefore);
        await second.WaitForFreshRoundAsync<DeliveryWorker>();
        Assert.All(new[] { 6, 7, 8, 9 }, hour => Assert.Single(smtp.MessagesTo($"missed{hour}@example.org")));
        Assert.Empty(smtp.MessagesTo("missed5@example.org")); // planned before the outage (here: found nothing)
        Assert.Empty(smtp.MessagesTo("missed10@example.org")); // not due yet
        Assert.Equal(
            [new DateTime(2030, 1, 10, 5, 0, 0), new DateTime(2030, 1, 10, 6, 0, 0), new DateTime(2030, 1, 10, 7, 0, 0),
             new DateTime(2030, 1, 10, 8, 0, 0), new DateTime(2030, 1, 10, 9, 0, 0)],
            (await _database.QueryAsync<DateTime>("SELECT slot FROM digest_slots WHERE slot < '2030-01-10T10:00:00Z' ORDER BY slot"))
                .Select(slot => DateTime.SpecifyKind(slot, DateTimeKind.Unspecified)));
        // Fired once for what was missed, then back on schedule: the next firing is the next hour.
        Assert.Equal(new DateTimeOffset(2030, 1, 10, 10, 0, 0, TimeSpan.Zero).UtcTicks,
            await _database.ScalarAsync<long>("SELECT next_fire_time FROM qrtz_triggers WHERE trigger_name = 'daily-digest'"));
    }

    [Fact]
    public async Task ASourceThatFailedAtTheDefaultSlotIsFetchedAgainBeforeTheDaysLaterSlots()
    {
        // 07:20: the slot of the default time fetches the day's papers, and the file is not there. 08:20: the file has come;
        // the 08:00 slot asks the source again before it plans.
        var message = await SentAfterALateFileAsync(defaultHour: 7, subscriberHour: 8,
            failing: new DateTimeOffset(2030, 1, 11, 7, 20, 0, TimeSpan.Zero), answering: new DateTimeOffset(2030, 1, 11, 8, 20, 0, TimeSpan.Zero));

        Assert.EndsWith("11 Jan 2030", message.Subject, StringComparison.Ordinal);
    }

    [Fact]
    public async Task ASourceThatFailedAtADefaultSlotLateInTheDayIsFetchedAgainBeforeTheSlotsAfterMidnight()
    {
        // A default time of 23:00: the slots from midnight to 22:00 plan that day's papers, and ask its failed source again.
        var message = await SentAfterALateFileAsync(defaultHour: 23, subscriberHour: 2,
            failing: new DateTimeOffset(2030, 1, 11, 23, 20, 0, TimeSpan.Zero), answering: new DateTimeOffset(2030, 1, 12, 2, 20, 0, TimeSpan.Zero));

        Assert.EndsWith("12 Jan 2030", message.Subject, StringComparison.Ordinal);
    }

    /// <summary>
    /// The papers of 11 January 2030 come from a file that is not there when the default slot (<paramref name="failing"/>)
    /// fetches them, and is there when the instance fires again at <paramref name="answering"/>: the email that then reaches a
    /// UTC subscriber at <paramref name="subscriberHour"/>, with the file's papers.
    /// </summary>
    private async Task<MimeKit.MimeMessage> SentAfterALateFileAsync(int defaultHour, int subscriberHour, DateTimeOffset failing, DateTimeOffset answering)
    {
        await using var smtp = await TestSmtpServer.StartNewAsync();
        var papersFile = Path.Combine(Path.GetTempPath(), $"subscriptions-late-papers-{Guid.NewGuid():N}.txt");
        var settings = new Dictionary<string, string?>
        {
            ["Digest:Enabled"] = "true",
            ["Digest:Schedule"] = $"0 0 {defaultHour} * * ?",
            ["Papers:Sources"] = "file",
            ["Papers:File:Path"] = papersFile,
        };
        await AddScheduledAsync("late@example.org", "UTC", subscriberHour, "dexterous manipulation");
        await _database.ExecuteAsync("INSERT INTO digest_slots (slot, planned_at, matched, planned, by_schedule) VALUES (@last, now(), 0, 0, true)",
            new { last = DeliverySlots.SlotOf(failing) - DeliverySlots.Length });
        try
        {
            await FireOnceAsync(new ShiftedTime(failing), smtp, settings);
            Assert.Equal(0, await _database.ScalarAsync<long>("SELECT count(*) FROM paper_days WHERE day = '2030-01-11'"));

            File.Copy(Path.Combine(AppContext.BaseDirectory, "Payloads", "trending-page.txt"), papersFile);
            await using var app = await FireOnceAsync(new ShiftedTime(answering), smtp, settings);

            var message = await smtp.WaitForMessageToAsync("late@example.org", TimeSpan.FromSeconds(30));
            Assert.Contains("Diffusion Policies for Dexterous Manipulation", message.TextBody);
            Assert.NotEqual(0, await _database.ScalarAsync<long>("SELECT count(*) FROM paper_days WHERE day = '2030-01-11'"));
            return message;
        }
        finally
        {
            File.Delete(papersFile);
        }
    }

    [Fact]
    public async Task SlotsMissedForMoreThanADayAreNamedInAWarning()
    {
        await using var smtp = await TestSmtpServer.StartNewAsync();
        var settings = new Dictionary<string, string?>
        {
            ["Digest:Enabled"] = "true",
            ["Digest:Schedule"] = "0 0 7 * * ?",
            ["Papers:Sources"] = "file",
            ["Papers:File:Path"] = Path.Combine(AppContext.BaseDirectory, "Payloads", "trending-page.txt"),
        };
        // The last slot planned was 05:00 the day before, 28 hours before this start: a start catches up 23 hours at most.
        await _database.ExecuteAsync("INSERT INTO digest_slots (slot, planned_at, matched, planned, by_schedule) VALUES ('2030-01-09T05:00:00Z', now(), 0, 0, true)");

        await using var app = await FireOnceAsync(new ShiftedTime(new DateTimeOffset(2030, 1, 10, 9, 20, 0, TimeSpan.Zero)), smtp, settings);

        Assert.Equal(new DateTime(2030, 1, 9, 10, 0, 0), DateTime.SpecifyKind(await _database.ScalarAsync<DateTime>(
            "SELECT min(slot) FROM digest_slots WHERE slot > '2030-01-09T05:00:00Z'"), DateTimeKind.Unspecified));
        var skipped = Assert.Single(app.Logs.GetSnapshot(), log => log.Message.Contains("were not planned", StringComparison.Ordinal));
        Assert.Equal(Microsoft.Extensions.Logging.LogLevel.Warning, skipped.Level);
        Assert.StartsWith("Digest slots 2030-01-09T06:00:00.0000000+00:00 to 2030-01-09T09:00:00.0000000+00:00 were not planned", skipped.Message, StringComparison.Ordinal);
    }

    /// <summary>Starts an instance whose clock says <paramref name="time"/>, with the hourly trigger due: it fires once. Returns it once that firing has finished.</summary>
    private async Task<TestApp> FireOnceAsync(ShiftedTime time, TestSmtpServer smtp, Dictionary<string, string?> settings)
    {
        await using (var scheduling = new TestApp(_database, smtp, time, settings))
        {
            _ = scheduling.Services; // schedules the hourly trigger
        }
        await _database.ExecuteAsync("UPDATE qrtz_triggers SET next_fire_time = @due WHERE trigger_name = 'daily-digest'",
            new { due = DateTimeOffset.UtcNow.AddMinutes(-3).UtcTicks });
        var firedBefore = await PreviousFireTimeAsync();
        var app = new TestApp(_database, smtp, time, settings);
        _ = app.Services;
        await WaitForFiringFinishedAsync(app, firedBefore);
        return app;
    }

    private async Task AddScheduledAsync(string email, string timeZone, int hour, params string[] topics)
    {
        var (id, _) = await _database.AddSubscriberAsync(email, "active", maxPapers: null, topics);
        await _database.ExecuteAsync("UPDATE subscribers SET time_zone = @timeZone, delivery_hour = @hour WHERE id = @id", new { id, timeZone, hour });
    }

    /// <summary>The daily trigger's previous fire time as the job store has it (on the app's clock), before an app starts.</summary>
    private async Task<long?> PreviousFireTimeAsync() =>
        (await _database.QueryAsync<long?>("SELECT prev_fire_time FROM qrtz_triggers WHERE trigger_name = 'daily-digest'")).SingleOrDefault();

    /// <summary>
    /// Returns once a firing of the daily trigger after the one recorded as <paramref name="firedBefore"/> has finished its
    /// job. (The fire times are on the app's shifted clock: compared with the real clock, any firing ever was "after".)
    /// </summary>
    private async Task WaitForFiringFinishedAsync(TestApp app, long? firedBefore)
    {
        var scheduler = await app.Services.GetRequiredService<ISchedulerFactory>().GetScheduler();
        var trigger = new TriggerKey("daily-digest");
        // The job disallows concurrent execution, so the store keeps its trigger Blocked from the firing
        // (which also records the previous fire time) until the job has returned.
        await Eventually.TrueAsync(
            async () => await PreviousFireTimeAsync() != firedBefore && await scheduler.GetTriggerState(trigger) == TriggerState.Normal,
            $"a firing of the daily digest after the one of {firedBefore} to finish", TimeSpan.FromSeconds(30));
    }
}
