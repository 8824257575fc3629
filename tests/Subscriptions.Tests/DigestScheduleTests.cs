using Microsoft.Extensions.DependencyInjection;
using Quartz;
using Subscriptions.Digest;
using Subscriptions.Papers;
using Subscriptions.Tests.Infrastructure;

namespace Subscriptions.Tests;

/// <summary>The daily trigger: Quartz's clustered job store in the real database.</summary>
public sealed class DigestScheduleTests(TestDatabase database) : IClassFixture<TestDatabase>
{
    [Theory]
    [InlineData("0 0 7 * * ?", "UTC", "2026-11-25T09:00:00Z", "2026-11-25")] // fired on time or late the same day
    [InlineData("0 0 7 * * ?", "UTC", "2026-11-26T06:59:00Z", "2026-11-25")] // the next morning, before its own run: yesterday's
    [InlineData("0 0 7 * * ?", "Europe/Berlin", "2026-11-25T05:30:00Z", "2026-11-24")] // 06:30 in Berlin
    [InlineData("0 0 7 * * ?", "Europe/Berlin", "2026-11-25T06:00:00Z", "2026-11-25")] // 07:00 in Berlin
    [InlineData("0 30 23 * * ?", "America/New_York", "2026-11-26T04:31:00Z", "2026-11-25")] // 23:31 in New York
    public void AFiringDigestsTheDayOfItsLatestScheduledTime(string schedule, string timeZone, string now, string expected)
    {
        var options = new DigestOptions { Schedule = schedule, TimeZone = timeZone };

        var day = DigestSchedule.DayOfFiring(options, DateTimeOffset.Parse(now, System.Globalization.CultureInfo.InvariantCulture));

        Assert.Equal(DateOnly.Parse(expected, System.Globalization.CultureInfo.InvariantCulture), day);
    }

    [Fact]
    public async Task TheScheduledTriggerPlansTheDayAndTheWorkerSendsIt()
    {
        await using var smtp = await TestSmtpServer.StartNewAsync();
        var today = DateOnly.FromDateTime(DateTime.UtcNow);
        await database.AddSubscriberAsync("scheduled@example.org", "active", maxPapers: null, "lidar");

        await using var app = new TestApp(database, smtp, settings: new Dictionary<string, string?>
        {
            ["Digest:Enabled"] = "true",
            ["Digest:Schedule"] = "0/2 * * * * ?", // every two seconds
            ["Papers:Sources"] = "file",
            ["Papers:File:Path"] = Path.Combine(AppContext.BaseDirectory, "Payloads", "trending-page.txt"),
        });
        await app.Services.GetRequiredService<PaperStore>().SaveDayAsync(today, "huggingface",
            [PaperRecord.Create("2611.00021", "Lidar Point Clouds", "Scans.", [], null, 3)], CancellationToken.None);

        var message = await smtp.WaitForMessageToAsync("scheduled@example.org", TimeSpan.FromSeconds(30));
        var firstEmailArrived = DateTimeOffset.UtcNow;

        Assert.StartsWith("1 trending paper on lidar", message.Subject, StringComparison.Ordinal);
        Assert.Equal(1, await database.ScalarAsync<long>(
            "SELECT count(*) FROM qrtz_cron_triggers WHERE sched_name = 'Subscriptions' AND cron_expression = '0/2 * * * * ?'"));
        Assert.True(await database.ScalarAsync<long>("SELECT count(*) FROM qrtz_scheduler_state WHERE sched_name = 'Subscriptions'") >= 1);
        // The job ingested the configured file for the day before planning.
        Assert.True(await database.ScalarAsync<long>("SELECT count(*) FROM paper_days WHERE source = 'file' AND day = @today", new { today }) >= 3);
        // Later firings the same day plan nothing new: still one email once a later firing, and a round of
        // the delivery worker after it, have run.
        await WaitForFiringFinishedAfterAsync(app, firstEmailArrived);
        await app.WaitForFreshRoundAsync<DeliveryWorker>();
        Assert.Single(smtp.MessagesTo("scheduled@example.org"));
    }

    [Fact]
    public async Task ARunMissedWhileEveryInstanceWasDownFiresOnceWhenOneComesBack()
    {
        await using var smtp = await TestSmtpServer.StartNewAsync();
        var settings = new Dictionary<string, string?>
        {
            ["Digest:Enabled"] = "true",
            ["Digest:Schedule"] = "0 0 7 * * ?",
            ["Papers:Sources"] = "file",
            ["Papers:File:Path"] = Path.Combine(AppContext.BaseDirectory, "Payloads", "trending-page.txt"),
        };
        var missedDay = DigestSchedule.DayOfFiring(new DigestOptions { Schedule = "0 0 7 * * ?" }, DateTimeOffset.UtcNow);
        await database.AddSubscriberAsync("missed@example.org", "active", maxPapers: null, "dexterous manipulation");

        await using (var first = new TestApp(database, smtp, settings: settings))
        {
            _ = first.Services; // starts, and schedules the daily trigger for the next 07:00
        }
        Assert.Equal(1, await database.ScalarAsync<long>("SELECT count(*) FROM qrtz_triggers WHERE trigger_name = 'daily-digest'"));

        // Every instance was down when the trigger was due, two hours ago.
        var due = DateTimeOffset.UtcNow.AddHours(-2).UtcTicks;
        await database.ExecuteAsync("UPDATE qrtz_triggers SET next_fire_time = @due WHERE trigger_name = 'daily-digest'", new { due });

        var secondStarted = DateTimeOffset.UtcNow;
        await using var second = new TestApp(database, smtp, settings: settings);
        _ = second.Services;

        var message = await smtp.WaitForMessageToAsync("missed@example.org", TimeSpan.FromSeconds(30));
        Assert.EndsWith(missedDay.ToString("d MMM yyyy", System.Globalization.CultureInfo.InvariantCulture), message.Subject, StringComparison.Ordinal);
        Assert.Contains("Diffusion Policies for Dexterous Manipulation", message.TextBody);
        // Fired once for the missed run, then back on schedule: the next firing is in the future.
        await WaitForFiringFinishedAfterAsync(second, secondStarted);
        await second.WaitForFreshRoundAsync<DeliveryWorker>();
        Assert.Single(smtp.MessagesTo("missed@example.org"));
        Assert.True(await database.ScalarAsync<long>("SELECT next_fire_time FROM qrtz_triggers WHERE trigger_name = 'daily-digest'") > DateTimeOffset.UtcNow.UtcTicks);
    }

    /// <summary>Returns once a firing of the daily trigger scheduled after <paramref name="since"/> has finished its job.</summary>
    private static async Task WaitForFiringFinishedAfterAsync(TestApp app, DateTimeOffset since)
    {
        var scheduler = await app.Services.GetRequiredService<ISchedulerFactory>().GetScheduler();
        var trigger = new TriggerKey("daily-digest");
        // The job disallows concurrent execution, so the store keeps its trigger Blocked from the firing
        // (which also records the previous fire time) until the job has returned.
        await Eventually.TrueAsync(
            async () => (await scheduler.GetTrigger(trigger))?.PreviousFireTimeUtc > since
                && await scheduler.GetTriggerState(trigger) == TriggerState.Normal,
            $"a firing of the daily digest scheduled after {since:O} to finish", TimeSpan.FromSeconds(30));
    }
}
