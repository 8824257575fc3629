using System.Globalization;
using Dapper;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Logging.Testing;
using Microsoft.Extensions.Options;
using Npgsql;
using Subscriptions.Digest;
using Subscriptions.Papers;
using Subscriptions.Tests.Infrastructure;

namespace Subscriptions.Tests;

/// <summary>Each subscriber's own delivery time: hourly slots, time zones and daylight saving, weekly digests, no repeats.</summary>
public sealed class DeliverySlotTests : IAsyncLifetime
{
    private static readonly DateOnly Day = new(2026, 11, 25); // a Wednesday
    private readonly TestDatabase _database = new(); // a database of its own: every due subscriber takes part in a slot
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

    [Theory]
    [InlineData("Europe/Berlin", "2026-10-20")] // clocks back on Sunday 25 October: 02:00–03:00 happens twice
    [InlineData("Europe/Berlin", "2026-03-25")] // forward on Sunday 29 March: 02:00–03:00 does not happen
    [InlineData("America/New_York", "2026-03-05")] // forward on Sunday 8 March
    [InlineData("America/New_York", "2026-10-29")] // back on Sunday 1 November
    [InlineData("Australia/Lord_Howe", "2026-04-01")] // half-hour DST, back on 5 April
    [InlineData("Asia/Kolkata", "2026-11-20")] // +05:30: its hours fall in the slot after them
    [InlineData("Pacific/Chatham", "2026-09-24")] // +12:45, forward on 27 September
    public void EveryHourOfEveryLocalDayFallsInExactlyOneSlot(string timeZone, string from)
    {
        var first = DateOnly.Parse(from, CultureInfo.InvariantCulture);
        var start = new DateTimeOffset(first.AddDays(-1).ToDateTime(TimeOnly.MinValue), TimeSpan.Zero);
        var due = new List<DueHour>();
        for (var slot = start; slot < start.AddDays(12); slot += DeliverySlots.Length)
        {
            due.AddRange(DeliverySlots.DueIn(slot, [timeZone]));
        }

        for (var day = first; day < first.AddDays(10); day = day.AddDays(1))
        {
            for (var hour = 0; hour < 24; hour++)
            {
                Assert.Single(due, d => d.Day == day && d.Hour == hour);
            }
        }
        Assert.All(due, d => Assert.Equal(DeliverySlots.IsoWeekday(d.Day), d.Weekday));
    }

    [Fact]
    public void DaylightSavingMovesTheSlotNotTheDay()
    {
        var berlin = TimeZoneInfo.FindSystemTimeZoneById("Europe/Berlin");

        // 02:00 on 25 Oct 2026 happens twice in Berlin (00:00 and 01:00 UTC): the first one.
        Assert.Equal(DateTimeOffset.Parse("2026-10-25T00:00:00Z", CultureInfo.InvariantCulture), DeliverySlots.Moment(new DateOnly(2026, 10, 25), 2, berlin));
        // 02:00 on 29 Mar 2026 does not happen: the instant the clocks jump, 01:00 UTC (03:00 CEST).
        Assert.Equal(DateTimeOffset.Parse("2026-03-29T01:00:00Z", CultureInfo.InvariantCulture), DeliverySlots.Moment(new DateOnly(2026, 3, 29), 2, berlin));
        // So the 01:00 UTC slot that day carries both 02:00 and 03:00.
        Assert.Equal(
            [new DueHour("Europe/Berlin", 2, new DateOnly(2026, 3, 29), 7), new DueHour("Europe/Berlin", 3, new DateOnly(2026, 3, 29), 7)],
            DeliverySlots.DueIn(DateTimeOffset.Parse("2026-03-29T01:00:00Z", CultureInfo.InvariantCulture), ["Europe/Berlin"]));
        // And New York's 02:00 on 8 Mar 2026 is 07:00 UTC (03:00 EDT); its 02:00 the day before, 07:00 UTC too (EST).
        var newYork = TimeZoneInfo.FindSystemTimeZoneById("America/New_York");
        Assert.Equal(DateTimeOffset.Parse("2026-03-08T07:00:00Z", CultureInfo.InvariantCulture), DeliverySlots.Moment(new DateOnly(2026, 3, 8), 2, newYork));
        Assert.Equal(DateTimeOffset.Parse("2026-03-07T07:00:00Z", CultureInfo.InvariantCulture), DeliverySlots.Moment(new DateOnly(2026, 3, 7), 2, newYork));
    }

    [Fact]
    public async Task PlanningRefreshesTheQueuesStatisticsWhenItAddsATenthOrMoreOfWhatTheyCounted()
    {
        await _database.SaveDayAsync(Day, TestDatabase.LidarPaper);
        for (var i = 0; i < 12; i++)
        {
            await AddAsync($"seven{i}@example.org", null, null); // the operator's default: 07:00 UTC
        }
        await AddAsync("eight@example.org", "UTC", 8);
        await AddAsync("nine@example.org", "UTC", 9);
        await using var app = new TestApp(_database, _smtp, settings: DefaultTime);
        var planner = app.Services.GetRequiredService<DeliveryPlanner>();
        const string analyses = "SELECT analyze_count FROM pg_stat_user_tables WHERE relname = 'delivery_queue'";
        var before = await _database.ScalarAsync<long>(analyses);

        // Nothing counted yet: twelve new rows are analyzed.
        Assert.Equal(12, (await planner.PlanSlotAsync(At(7), papersDay: null, CancellationToken.None)).Added);
        Assert.Equal(before + 1, await _database.ScalarAsync<long>(analyses));
        // One more is under a tenth of the twelve counted: left to autovacuum.
        Assert.Equal(1, (await planner.PlanSlotAsync(At(8), papersDay: null, CancellationToken.None)).Added);
        Assert.Equal(before + 1, await _database.ScalarAsync<long>(analyses));
        // Once the queue is sent (here, emptied and vacuumed), a new slot's rows are analyzed again.
        await _database.ExecuteAsync("DELETE FROM delivery_queue");
        await _database.ExecuteAsync("VACUUM delivery_queue");
        Assert.Equal(1, (await planner.PlanSlotAsync(At(9), papersDay: null, CancellationToken.None)).Added);
        Assert.Equal(before + 2, await _database.ScalarAsync<long>(analyses));
        // A slot that adds nothing leaves them as they were.
        Assert.Equal(0, (await planner.PlanSlotAsync(At(9), papersDay: null, CancellationToken.None)).Added);
        Assert.Equal(before + 2, await _database.ScalarAsync<long>(analyses));

        static DateTimeOffset At(int hour) => new(2026, 11, 25, hour, 0, 0, TimeSpan.Zero);
    }

    [Fact]
    public async Task PlanningLooksUpWhatEachSubscriberGotBeforeByKeyWhereTheStatisticsSayThereIsNothing()
    {
        await _database.SaveDayAsync(Day, TestDatabase.LidarPaper);
        for (var i = 0; i < 30; i++)
        {
            await AddAsync($"reader{i}@example.org", null, null);
        }
        // As on a new installation, or between a small slot and a large one: the statistics have the table empty, while
        // the slot's own rows are being written beside the read.
        await _database.ExecuteAsync("ANALYZE delivery_papers");
        await using var app = new TestApp(_database, _smtp, settings: DefaultTime);
        var planner = app.Services.GetRequiredService<DeliveryPlanner>();
        const string scans = "SELECT seq_scan, coalesce(idx_scan, 0) FROM pg_stat_user_tables WHERE relname = 'delivery_papers'";
        var (sequentialBefore, byKeyBefore) = (await _database.QueryAsync<(long, long)>(scans)).Single();

        Assert.Equal(30, (await planner.PlanSlotAsync(new DateTimeOffset(2026, 11, 25, 7, 0, 0, TimeSpan.Zero), papersDay: null, CancellationToken.None)).Added);

        // A connection reports its scans once it is idle, within about a second.
        var (sequential, byKey) = await Eventually.ValueAsync(
            async () => (await _database.QueryAsync<(long Sequential, long ByKey)>(scans)).Single(),
            counts => counts.Sequential + counts.ByKey > sequentialBefore + byKeyBefore,
            "the planner's scans of delivery_papers", counts => $"{counts.Sequential} sequential, {counts.ByKey} by key");
        Assert.Equal(sequentialBefore, sequential);
        Assert.Equal(byKeyBefore + 60, byKey); // two lookups per subscriber: the papers they were planned, their digests of the week before
    }

    [Fact]
    public async Task PlanningLeavesNoSettingBehindOnTheConnectionsItUsed()
    {
        await _database.SaveDayAsync(Day, TestDatabase.LidarPaper);
        for (var i = 0; i < 3; i++)
        {
            await AddAsync($"reader{i}@example.org", null, null);
        }
        var serverDefaults = (await _database.QueryAsync<(string, string)>("SELECT current_setting('jit'), current_setting('enable_seqscan')")).Single();
        Assert.Equal(("on", "on"), serverDefaults); // what planning turns off for its read
        // As behind PgBouncer in transaction mode: nothing resets a connection given back. At most four connections, the most
        // planning holds at once (its read, two writers, the matcher's), so that each one it used is among the four read after.
        var settings = new Dictionary<string, string?>(DefaultTime)
        {
            ["ConnectionStrings:Postgres"] = $"{_database.ConnectionString};No Reset On Close=true;Maximum Pool Size=4",
        };
        await using var app = new TestApp(_database, _smtp, settings: settings);

        Assert.Equal(3, (await app.Services.GetRequiredService<DeliveryPlanner>().PlanSlotAsync(
            new DateTimeOffset(2026, 11, 25, 7, 0, 0, TimeSpan.Zero), papersDay: null, CancellationToken.None)).Added);

        var dataSource = app.Services.GetRequiredService<NpgsqlDataSource>();
        var connections = new List<NpgsqlConnection>();
        try
        {
            for (var i = 0; i < 4; i++)
            {
                connections.Add(await dataSource.OpenConnectionAsync());
            }
            foreach (var connection in connections)
            {
                Assert.Equal(serverDefaults, await connection.QuerySingleAsync<(string, string)>(
                    "SELECT current_setting('jit'), current_setting('enable_seqscan')"));
            }
        }
        finally
        {
            foreach (var connection in connections)
            {
                await connection.DisposeAsync();
            }
        }
    }

    [Fact]
    public async Task EachSubscriberIsPlannedInTheSlotOfTheirOwnHourAndZone()
    {
        // Kolkata's 09:00 comes before the day's papers are ingested (07:00 UTC): it gets the day before's.
        await _database.SaveDayAsync(Day.AddDays(-1), TestDatabase.LidarPaper);
        await _database.SaveDayAsync(Day, TestDatabase.LidarPaper);
        var legacy = await AddAsync("legacy@example.org", null, null); // the operator's default: 07:00 UTC
        var berlin = await AddAsync("berlin@example.org", "Europe/Berlin", 8); // 07:00 UTC in November
        var newYork = await AddAsync("newyork@example.org", "America/New_York", 7); // 12:00 UTC
        var kolkata = await AddAsync("kolkata@example.org", "Asia/Kolkata", 9); // 03:30 UTC: the 04:00 slot
        var tokyo = await AddAsync("tokyo@example.org", "Asia/Tokyo", 7); // 22:00 UTC, on the 26th in Tokyo
        await using var app = new TestApp(_database, _smtp, settings: DefaultTime);
        var planner = app.Services.GetRequiredService<DeliveryPlanner>();

        var planned = new Dictionary<long, (DateTime Slot, DateOnly Day)>();
        for (var slot = new DateTimeOffset(2026, 11, 25, 0, 0, 0, TimeSpan.Zero); slot.Day == 25; slot += DeliverySlots.Length)
        {
            var before = await _database.ScalarAsync<long>("SELECT count(*) FROM deliveries");
            var plan = await planner.PlanSlotAsync(slot, papersDay: null, CancellationToken.None);
            foreach (var (subscriber, day) in await _database.QueryAsync<(long, DateTime)>(
                "SELECT subscriber_id, day FROM deliveries ORDER BY id OFFSET @before", new { before }))
            {
                Assert.True(planned.TryAdd(subscriber, (slot.UtcDateTime, DateOnly.FromDateTime(day))), $"subscriber {subscriber} planned twice");
            }
            Assert.Equal(plan.Added, await _database.ScalarAsync<long>("SELECT count(*) FROM deliveries") - before);
        }

        Assert.Equal((At(7), Day), planned[legacy]);
        Assert.Equal((At(7), Day), planned[berlin]);
        Assert.Equal((At(12), Day), planned[newYork]);
        Assert.Equal((At(4), Day), planned[kolkata]);
        Assert.Equal((At(22), Day.AddDays(1)), planned[tokyo]);
        Assert.Equal(24, await _database.ScalarAsync<long>("SELECT count(*) FROM digest_slots"));
        // Planning a slot again adds nothing.
        Assert.Equal(0, (await planner.PlanSlotAsync(At(12), papersDay: null, CancellationToken.None)).Added);

        static DateTime At(int hour) => new(2026, 11, 25, hour, 0, 0, DateTimeKind.Utc);
    }

    [Fact]
    public async Task ASubscriberInADaylightSavingZoneGetsOneDigestPerLocalDayAndEveryDaysPapersOnceAcrossTheChange()
    {
        // Each day's papers are ingested as the schedule does, at the default slot (07:00 UTC): 22 to 27 October (Berlin and
        // London go back an hour on the 25th) and 5 to 10 March (New York goes forward on the 8th). Berlin and New York asked
        // for 02:00, the hour that repeats or is skipped; London for 07:00, which daylight saving moves from before the
        // default slot (06:00 UTC) to it (07:00 UTC): on the 25th, the papers of the 24th and the 25th are both new to them.
        // New York's 02:00 moves the other way on the 8th: on the 9th (06:00 UTC) nothing is new yet, and no email goes.
        var berlin = await AddAsync("berlin@example.org", "Europe/Berlin", 2);
        var london = await AddAsync("london@example.org", "Europe/London", 7);
        var newYork = await AddAsync("newyork@example.org", "America/New_York", 2);
        await using var app = new TestApp(_database, _smtp, settings: DefaultTime);
        var planner = app.Services.GetRequiredService<DeliveryPlanner>();

        foreach (var first in new[] { new DateOnly(2026, 10, 22), new DateOnly(2026, 3, 5) })
        {
            var from = new DateTimeOffset(first.ToDateTime(TimeOnly.MinValue), TimeSpan.Zero);
            for (var slot = from; slot < from.AddDays(6); slot += DeliverySlots.Length)
            {
                if (slot.Hour == 7)
                {
                    var day = DateOnly.FromDateTime(slot.UtcDateTime);
                    await _database.SaveDayAsync(day, PaperRecord.Create(null, $"Lidar mapping, day {day:MMdd}", "Scans.", [], null, 3));
                }
                await planner.PlanSlotAsync(slot, papersDay: null, CancellationToken.None);
            }
        }

        Assert.Equal(
            ["03-06: 03-05", "03-07: 03-06", "03-08: 03-07", "03-09: 03-08", "03-10: 03-09",
             "10-23: 10-22", "10-24: 10-23", "10-25: 10-24", "10-26: 10-25", "10-27: 10-26"],
            await DeliveredPaperDaysAsync(berlin));
        Assert.Equal(
            ["03-05: 03-05", "03-06: 03-06", "03-07: 03-07", "03-08: 03-08", "03-09: 03-09", "03-10: 03-10",
             "10-23: 10-22", "10-24: 10-23", "10-25: 10-24 10-25", "10-26: 10-26", "10-27: 10-27"],
            await DeliveredPaperDaysAsync(london));
        Assert.Equal(
            ["03-05: 03-05", "03-06: 03-06", "03-07: 03-07", "03-08: 03-08", "03-10: 03-09",
             "10-23: 10-22", "10-24: 10-23", "10-25: 10-24", "10-26: 10-25", "10-27: 10-26"],
            await DeliveredPaperDaysAsync(newYork));
    }

    [Fact]
    public async Task TheDigestOfADayGivesEachSubscriberOfItsDefaultSlotTheDaysSinceTheirDeliveryTimeTheDayBefore()
    {
        // London's 07:00 was 06:00 UTC on Saturday 24 October, before that day's papers came (07:00 UTC), and is 07:00 UTC,
        // the default slot, on the Sunday: the day's digest planned by hand (`digest --date`, the console's run) gives them
        // the Saturday's papers and the Sunday's; a subscriber whose 07:00 is UTC's, the Sunday's.
        foreach (var day in new[] { new DateOnly(2026, 10, 23), new DateOnly(2026, 10, 24), new DateOnly(2026, 10, 25) })
        {
            await _database.SaveDayAsync(day, PaperRecord.Create(null, $"Lidar mapping, day {day:MMdd}", "Scans.", [], null, 3));
        }
        var london = await AddAsync("london@example.org", "Europe/London", 7);
        var utc = await AddAsync("utc@example.org", "UTC", 7);
        await using var app = new TestApp(_database, _smtp, settings: DefaultTime);
        await app.Services.GetRequiredService<DeliveryPlanner>().PlanSlotAsync(
            new DateTimeOffset(2026, 10, 24, 6, 0, 0, TimeSpan.Zero), papersDay: null, CancellationToken.None);

        await app.Services.GetRequiredService<DigestRunner>().PlanDayAsync(new DateOnly(2026, 10, 25), ingestFirst: false, _ => { }, CancellationToken.None);

        Assert.Equal(["10-24: 10-23", "10-25: 10-24 10-25"], await DeliveredPaperDaysAsync(london));
        Assert.Equal(["10-25: 10-25"], await DeliveredPaperDaysAsync(utc));
    }

    [Fact]
    public async Task ASubscriberWhoMovesTheirTimeFromBeforeTheDaysPapersToAfterGetsTheDayBetweenToo()
    {
        // At 05:00 UTC on the 23rd they got the 22nd's papers (each day's come at 07:00); on the 24th the 23rd's matched
        // none of their topics, and they chose 09:00: on the 25th, the 24th's papers are new to them as well as the 25th's.
        // Worked out from the new time alone, or from a digest the day before (they had none), the 24th's were no one's.
        await _database.SaveDayAsync(Day.AddDays(-3), PaperRecord.Create(null, "Lidar mapping, day 1122", "Scans.", [], null, 3));
        await _database.SaveDayAsync(Day.AddDays(-2), PaperRecord.Create(null, "Protein folding kinetics", "Enzymes.", [], null, 3));
        await _database.SaveDayAsync(Day.AddDays(-1), PaperRecord.Create(null, "Lidar mapping, day 1124", "Scans.", [], null, 3));
        await _database.SaveDayAsync(Day, PaperRecord.Create(null, "Lidar mapping, day 1125", "Scans.", [], null, 3));
        var mover = await AddAsync("mover@example.org", "UTC", 5);
        await using var app = new TestApp(_database, _smtp, settings: DefaultTime);
        var planner = app.Services.GetRequiredService<DeliveryPlanner>();

        await planner.PlanSlotAsync(new DateTimeOffset(2026, 11, 23, 5, 0, 0, TimeSpan.Zero), papersDay: null, CancellationToken.None);
        await planner.PlanSlotAsync(new DateTimeOffset(2026, 11, 24, 5, 0, 0, TimeSpan.Zero), papersDay: null, CancellationToken.None);
        await _database.ExecuteAsync("UPDATE subscribers SET delivery_hour = 9 WHERE id = @mover", new { mover });
        await planner.PlanSlotAsync(new DateTimeOffset(2026, 11, 25, 9, 0, 0, TimeSpan.Zero), papersDay: null, CancellationToken.None);
        // Planning that slot again adds nothing.
        var again = await planner.PlanSlotAsync(new DateTimeOffset(2026, 11, 25, 9, 0, 0, TimeSpan.Zero), papersDay: null, CancellationToken.None);

        Assert.Equal(["11-23: 11-22", "11-25: 11-24 11-25"], await DeliveredPaperDaysAsync(mover));
        Assert.Equal(0, again.Added);
    }

    [Fact]
    public async Task ADayAskedForBeforeItsPapersCameIsNotTakenAsHad()
    {
        // The day's digest planned by hand while its papers are not there yet (their fetch failed): London's 07:00 subscriber
        // gets the 24th's papers on the 25th; the 25th's, fetched later, come with the 26th's, not never.
        await _database.SaveDayAsync(new DateOnly(2026, 10, 24), PaperRecord.Create(null, "Lidar mapping, day 1024", "Scans.", [], null, 3));
        var london = await AddAsync("london@example.org", "Europe/London", 7);
        await using var app = new TestApp(_database, _smtp, settings: DefaultTime);

        await app.Services.GetRequiredService<DigestRunner>().PlanDayAsync(new DateOnly(2026, 10, 25), ingestFirst: false, _ => { }, CancellationToken.None);
        foreach (var day in new[] { new DateOnly(2026, 10, 25), new DateOnly(2026, 10, 26) })
        {
            await _database.SaveDayAsync(day, PaperRecord.Create(null, $"Lidar mapping, day {day:MMdd}", "Scans.", [], null, 3));
        }
        await app.Services.GetRequiredService<DeliveryPlanner>().PlanSlotAsync(
            new DateTimeOffset(2026, 10, 26, 7, 0, 0, TimeSpan.Zero), papersDay: null, CancellationToken.None);

        Assert.Equal(["10-25: 10-24", "10-26: 10-25 10-26"], await DeliveredPaperDaysAsync(london));
    }

    [Fact]
    public async Task AWeeklySubscriberWhoseSlotDaylightSavingMovesAcrossTheDefaultOneGetsEveryDaysPapersOnce()
    {
        // London, Sundays at 07:00: 06:00 UTC on 18 October, before that day's papers come (07:00 UTC), and 07:00 UTC on the
        // 25th. The digest of the 18th has the 11th to the 17th; that of the 25th, the 18th to the 25th: eight days.
        var weekly = await AddAsync("weekly@example.org", "Europe/London", 7, "weekly", weekday: 7);
        await _database.ExecuteAsync("UPDATE subscribers SET max_papers = 20 WHERE id = @weekly", new { weekly });
        await using var app = new TestApp(_database, _smtp, settings: DefaultTime);
        var planner = app.Services.GetRequiredService<DeliveryPlanner>();

        for (var day = new DateOnly(2026, 10, 11); day <= new DateOnly(2026, 10, 25); day = day.AddDays(1))
        {
            var morning = new DateTimeOffset(day.ToDateTime(new TimeOnly(6, 0)), TimeSpan.Zero);
            await planner.PlanSlotAsync(morning, papersDay: null, CancellationToken.None);
            await _database.SaveDayAsync(day, PaperRecord.Create(null, $"Lidar mapping, day {day:MMdd}", "Scans.", [], null, 3));
            await planner.PlanSlotAsync(morning + DeliverySlots.Length, papersDay: null, CancellationToken.None);
        }

        Assert.Equal(
            ["10-18: 10-11 10-12 10-13 10-14 10-15 10-16 10-17", "10-25: 10-18 10-19 10-20 10-21 10-22 10-23 10-24 10-25"],
            await DeliveredPaperDaysAsync(weekly));
    }

    [Fact]
    public async Task PapersStoredBeforeTheDefaultTimeWaitForIt()
    {
        // The day before's papers came at the default time (07:00 UTC), after this subscriber's 05:00; the day's are fetched
        // early, by hand at 03:00. The 05:00 slot sends the day before's still, and the day's come the next day: taking the
        // day's at once left the day before's to no one.
        await _database.SaveDayAsync(Day.AddDays(-1), PaperRecord.Create(null, "Lidar of the day before", "Scans.", [], null, 3));
        var early = await AddAsync("early@example.org", "UTC", 5);
        await _database.SaveDayAsync(Day, PaperRecord.Create(null, "Lidar of the day", "Scans.", [], null, 3));
        await using var app = new TestApp(_database, _smtp, settings: DefaultTime);
        var planner = app.Services.GetRequiredService<DeliveryPlanner>();

        var plan = await planner.PlanSlotAsync(new DateTimeOffset(2026, 11, 25, 5, 0, 0, TimeSpan.Zero), papersDay: null, CancellationToken.None);
        await planner.PlanSlotAsync(new DateTimeOffset(2026, 11, 26, 5, 0, 0, TimeSpan.Zero), papersDay: null, CancellationToken.None);

        Assert.Equal(Day.AddDays(-1), plan.PapersDay);
        Assert.Equal(["11-25: 11-24", "11-26: 11-25"], await DeliveredPaperDaysAsync(early));
    }

    [Fact]
    public async Task AWeeklySubscriberGetsTheWeeksBestMatchesOnTheirWeekday()
    {
        // Each day of the week to Wednesday the 25th: a much-upvoted lidar paper and a barely-upvoted one.
        for (var day = Day.AddDays(-6); day <= Day; day = day.AddDays(1))
        {
            await _database.SaveDayAsync(day,
                PaperRecord.Create(null, $"Lidar popular {day:MMdd}", "Scans.", [], null, 100),
                PaperRecord.Create(null, $"Lidar obscure {day:MMdd}", "Scans.", [], null, 1));
        }
        var weekly = await AddAsync("weekly@example.org", "UTC", 7, "weekly", weekday: 3);
        await _database.ExecuteAsync("UPDATE subscribers SET max_papers = 4 WHERE id = @weekly", new { weekly });
        await AddAsync("thursday@example.org", "UTC", 7, "weekly", weekday: 4);
        await AddAsync("daily@example.org", "UTC", 7);
        await using var app = new TestApp(_database, _smtp, settings: DefaultTime);

        var summary = await app.Services.GetRequiredService<DigestRunner>().RunAsync(Day, ingestFirst: false, dryRun: false, _ => { }, CancellationToken.None);

        Assert.Equal(2, summary.Sent);
        var week = Assert.Single(_smtp.MessagesTo("weekly@example.org"));
        Assert.StartsWith("4 trending papers on lidar", week.Subject, StringComparison.Ordinal);
        // The week's best, ranked as a day's are: only the popular ones, from several days.
        Assert.Equal(4, CountOf(week.TextBody, "Lidar popular"));
        Assert.DoesNotContain("Lidar obscure", week.TextBody);
        var daily = Assert.Single(_smtp.MessagesTo("daily@example.org"));
        Assert.Contains("Lidar popular 1125", daily.TextBody);
        Assert.Contains("Lidar obscure 1125", daily.TextBody);
        Assert.DoesNotContain("1124", daily.TextBody);
        Assert.Empty(_smtp.MessagesTo("thursday@example.org"));
    }

    [Fact]
    public async Task APaperTrendingOnTwoDaysOrListedByTwoSourcesIsSentOnce()
    {
        var repeated = TestDatabase.LidarPaper;
        await _database.SaveDayAsync(Day.AddDays(-1), repeated, PaperRecord.Create(null, "Lidar in the rain", "Wet scans.", [], null, 2));
        await _database.SaveDayAsync(Day, repeated, PaperRecord.Create(null, "Lidar in the snow", "Cold scans.", [], null, 2));
        await using var app = new TestApp(_database, _smtp, settings: DefaultTime);
        await app.Services.GetRequiredService<PaperStore>().SaveDayAsync(Day, "arxiv", [repeated], CancellationToken.None);
        await AddAsync("reader@example.org", null, null);
        await AddAsync("newcomer@example.org", null, null);
        await _database.ExecuteAsync("UPDATE subscribers SET status = 'pending' WHERE email = 'newcomer@example.org'");
        var runner = app.Services.GetRequiredService<DigestRunner>();

        await runner.RunAsync(Day.AddDays(-1), ingestFirst: false, dryRun: false, _ => { }, CancellationToken.None);
        await _database.ExecuteAsync("UPDATE subscribers SET status = 'active' WHERE email = 'newcomer@example.org'");
        await runner.RunAsync(Day, ingestFirst: false, dryRun: false, _ => { }, CancellationToken.None);

        var emails = _smtp.MessagesTo("reader@example.org");
        Assert.Equal(2, emails.Count);
        Assert.Contains("Lidar Odometry at Night", emails[0].TextBody);
        Assert.Contains("Lidar in the rain", emails[0].TextBody);
        Assert.DoesNotContain("Lidar Odometry at Night", emails[1].TextBody);
        Assert.StartsWith("1 trending paper on lidar", emails[1].Subject, StringComparison.Ordinal);
        Assert.Contains("Lidar in the snow", emails[1].TextBody);
        // Someone who did not get it the day before gets it, once, though two sources list it.
        var newcomer = Assert.Single(_smtp.MessagesTo("newcomer@example.org"));
        Assert.Equal(1, CountOf(newcomer.TextBody, "Lidar Odometry at Night"));
    }

    [Fact]
    public async Task APaperThatTrendsAgainMonthsLaterIsNotSentAgain()
    {
        // Planning reads what each subscriber got before only on the days a window paper could have reached them (those
        // after a day it was listed on), not every day since the first: here 209 days back, six days before a weekly digest
        // took it, with other digests between that do not count.
        var repeated = TestDatabase.LidarPaper;
        var firstListed = Day.AddDays(-209); // a Thursday: the weekly Wednesday digest six days later takes it
        await _database.SaveDayAsync(firstListed, repeated, PaperRecord.Create(null, "Lidar in the fog", "Grey scans.", [], null, 2));
        await _database.SaveDayAsync(Day.AddDays(-100), PaperRecord.Create(null, "Lidar in the desert", "Dry scans.", [], null, 2));
        await _database.SaveDayAsync(Day, repeated, PaperRecord.Create(null, "Lidar in the snow", "Cold scans.", [], null, 2));
        var daily = await AddAsync("daily@example.org", null, null);
        var weekly = await AddAsync("weekly@example.org", null, null, "weekly", weekday: 3);
        var newcomer = await AddAsync("newcomer@example.org", null, null, "weekly", weekday: 3);
        await using var app = new TestApp(_database, _smtp, settings: DefaultTime);
        var runner = app.Services.GetRequiredService<DigestRunner>();

        await _database.ExecuteAsync("UPDATE subscribers SET status = 'pending' WHERE id = @newcomer", new { newcomer });
        foreach (var day in new[] { firstListed, firstListed.AddDays(6), Day.AddDays(-100) })
        {
            await runner.RunAsync(day, ingestFirst: false, dryRun: false, _ => { }, CancellationToken.None);
        }
        await _database.ExecuteAsync("UPDATE subscribers SET status = 'active' WHERE id = @newcomer", new { newcomer });
        await runner.RunAsync(Day, ingestFirst: false, dryRun: false, _ => { }, CancellationToken.None);

        Assert.Equal(["-209", "-100", "0"], await DeliveryDaysAsync(daily));
        Assert.Equal(["-203", "0"], await DeliveryDaysAsync(weekly));
        var dailyEmails = _smtp.MessagesTo("daily@example.org");
        Assert.Contains("Lidar Odometry at Night", dailyEmails[0].TextBody);
        var weeklyEmails = _smtp.MessagesTo("weekly@example.org");
        Assert.Contains("Lidar Odometry at Night", weeklyEmails[0].TextBody);
        foreach (var again in new[] { dailyEmails[^1], weeklyEmails[^1] })
        {
            Assert.StartsWith("1 trending paper on lidar", again.Subject, StringComparison.Ordinal);
            Assert.Contains("Lidar in the snow", again.TextBody);
            Assert.DoesNotContain("Lidar Odometry at Night", again.TextBody);
        }
        // Someone who never had it gets it.
        Assert.Contains("Lidar Odometry at Night", Assert.Single(_smtp.MessagesTo("newcomer@example.org")).TextBody);

        async Task<IReadOnlyList<string>> DeliveryDaysAsync(long subscriber) =>
            [.. (await _database.QueryAsync<DateOnly>("SELECT day FROM deliveries WHERE subscriber_id = @subscriber ORDER BY day", new { subscriber }))
                .Select(day => (day.DayNumber - Day.DayNumber).ToString(CultureInfo.InvariantCulture))];
    }

    [Fact]
    public async Task DigestAtRunsTheSlotOfThatInstantAndRefusesAnInstantItCannotRead()
    {
        await _database.SaveDayAsync(Day, TestDatabase.LidarPaper);
        await AddAsync("seven@example.org", "UTC", 7);
        await AddAsync("nine@example.org", "UTC", 9);
        await AddAsync("tokyo-six-pm@example.org", "Asia/Tokyo", 18); // 09:00 UTC
        var environment = new Dictionary<string, string>
        {
            ["ConnectionStrings__Postgres"] = _database.ConnectionString,
            ["App__TokenSecret"] = "a-secret-for-the-slot-test-of-the-digest-verb",
            ["Smtp__Host"] = "127.0.0.1",
            ["Smtp__Port"] = _smtp.Port.ToString(CultureInfo.InvariantCulture),
            ["Smtp__Security"] = "None",
        };

        var run = await ServiceBinary.RunAsync(["digest", "--at", "2026-11-25T09:30:00+00:00", "--no-ingest"], environment);
        var unreadable = await ServiceBinary.RunAsync(["digest", "--at", "half past nine"], environment);
        var both = await ServiceBinary.RunAsync(["digest", "--at", "2026-11-25T09:00:00Z", "--date", "2026-11-25"], environment);

        Assert.Equal(0, run.ExitCode);
        Assert.Contains("slot 2026-11-25 09:00Z", run.Output);
        Assert.Contains("2 subscribers due", run.Output);
        Assert.Single(_smtp.MessagesTo("nine@example.org"));
        Assert.Single(_smtp.MessagesTo("tokyo-six-pm@example.org"));
        Assert.Empty(_smtp.MessagesTo("seven@example.org"));
        Assert.Equal((64, 64), (unreadable.ExitCode, both.ExitCode));
        Assert.Contains("--at half past nine", unreadable.Error + unreadable.Output);
    }

    private static int CountOf(string? text, string part) => text is null ? 0 : (text.Length - text.Replace(part, "", StringComparison.Ordinal).Length) / part.Length;

    [Fact]
    public async Task ASlotOfMoreSubscribersThanOneBatchGivesEachTheirOwnList()
    {
        // Planning matches a slot a batch of 5,000 subscribers at a time, searching a topic when a batch first has it. Here
        // "probing" belongs only to the last 1,000 subscribers added, which the due query reads (in index order, though it
        // promises none) after the first batch: without the search in later batches, 999 lists were missing. A weekly
        // subscriber's week is searched apart. The assertions hold in any order.
        var probing = PaperRecord.Create("2611.00004", "Sparse Probing of Vision Transformers", "Linear probes.", [], null, 4);
        await _database.SaveDayAsync(Day, TestDatabase.LidarPaper, probing);
        await _database.ExecuteAsync("""
            INSERT INTO subscribers (email, status, subscription_key, created_at, updated_at, confirmed_at)
            SELECT 'reader' || g || '@example.org', 'active', decode(md5(g::text), 'hex'), now(), now(), now()
            FROM generate_series(1, 12000) AS g;
            INSERT INTO topics (subscriber_id, position, text)
            SELECT id, 0, CASE WHEN row_number() OVER (ORDER BY id) > 11000 THEN 'probing' ELSE 'lidar' END FROM subscribers;
            UPDATE subscribers SET frequency = 'weekly', weekday = 3 WHERE id % 1000 = 0;
            """);
        await using var app = new TestApp(_database, _smtp, settings: DefaultTime);

        var plan = await app.Services.GetRequiredService<DeliveryPlanner>().PlanSlotAsync(
            new DateTimeOffset(2026, 11, 25, 7, 0, 0, TimeSpan.Zero), papersDay: null, CancellationToken.None);

        Assert.Equal((12000, 12000, 12000), (plan.Covered, plan.Matched, plan.Added));
        var lists = await _database.QueryAsync<(string Topic, string Titles)>("""
            SELECT t.text, string_agg(p.title, ', ' ORDER BY p.title)
            FROM delivery_papers d JOIN topics t ON t.subscriber_id = d.subscriber_id
            CROSS JOIN LATERAL unnest(d.paper_ids) AS listed(id) JOIN papers p ON p.id = listed.id
            GROUP BY t.text, d.subscriber_id
            """);
        Assert.Equal(
            [("lidar", "Lidar Odometry at Night", 11000L), ("probing", "Sparse Probing of Vision Transformers", 1000L)],
            lists.GroupBy(list => (list.Topic, list.Titles)).Select(group => (group.Key.Topic, group.Key.Titles, group.LongCount())).Order());
    }

    [Fact]
    public async Task EachSlotMatchesTheDaysPapersAsTheyAreWhenItIsPlanned()
    {
        // One process keeps the day's papers and topic searches from slot to slot while the papers are unchanged: a paper
        // listed, or renamed, between two slots must be seen by the second.
        await _database.SaveDayAsync(Day, TestDatabase.LidarPaper);
        var eight = await AddAsync("eight@example.org", "UTC", 8);
        var nine = await AddAsync("nine@example.org", "UTC", 9);
        var ten = await AddAsync("ten@example.org", "UTC", 10);
        await using var app = new TestApp(_database, _smtp, settings: DefaultTime);
        var planner = app.Services.GetRequiredService<DeliveryPlanner>();

        await planner.PlanSlotAsync(At(8), papersDay: null, CancellationToken.None);
        await _database.SaveDayAsync(Day, TestDatabase.LidarPaper, PaperRecord.Create("2611.00005", "Lidar in the fog", "Scans.", [], null, 3));
        await planner.PlanSlotAsync(At(9), papersDay: null, CancellationToken.None);
        await _database.SaveDayAsync(Day, TestDatabase.LidarPaper, PaperRecord.Create("2611.00005", "Protein folding kinetics", "Enzymes.", [], null, 3));
        await planner.PlanSlotAsync(At(10), papersDay: null, CancellationToken.None);

        Assert.Equal(["2611.00003"], await PlannedPapersAsync(eight));
        Assert.Equal(["2611.00003", "2611.00005"], await PlannedPapersAsync(nine));
        Assert.Equal(["2611.00003"], await PlannedPapersAsync(ten));

        static DateTimeOffset At(int hour) => new(2026, 11, 25, hour, 0, 0, TimeSpan.Zero);
        async Task<IReadOnlyList<string>> PlannedPapersAsync(long subscriber) => await _database.QueryAsync<string>("""
            SELECT p.arxiv_id FROM delivery_papers d CROSS JOIN LATERAL unnest(d.paper_ids) AS listed(id) JOIN papers p ON p.id = listed.id
            WHERE d.subscriber_id = @subscriber ORDER BY p.arxiv_id
            """, new { subscriber });
    }

    [Fact]
    public async Task SubscribersInATimeZoneThisMachineDoesNotKnowAreNamedInAnError()
    {
        await _database.SaveDayAsync(Day, TestDatabase.LidarPaper);
        await AddAsync("known@example.org", "UTC", 7);
        await AddAsync("unknown@example.org", "America/Nowhere_Yet", 7); // as a newer instance's tzdata could have taken it
        await using var app = new TestApp(_database, _smtp, settings: DefaultTime);
        var logs = new FakeLogCollector();
        var planner = new DeliveryPlanner(app.Services.GetRequiredService<NpgsqlDataSource>(), app.Services.GetRequiredService<Matching.TopicMatcher>(),
            app.Services.GetRequiredService<IOptions<DigestOptions>>(), TimeProvider.System, new FakeLogger<DeliveryPlanner>(logs));

        var plan = await planner.PlanSlotAsync(new DateTimeOffset(2026, 11, 25, 7, 0, 0, TimeSpan.Zero), papersDay: null, CancellationToken.None);

        Assert.Equal(1, plan.Added);
        var error = Assert.Single(logs.GetSnapshot(), log => log.Level == LogLevel.Error);
        Assert.Contains("subscribers in time zones this machine does not know (America/Nowhere_Yet) are not planned", error.Message);
    }

    private static readonly Dictionary<string, string?> DefaultTime = new() { ["Digest:Schedule"] = "0 0 7 * * ?", ["Digest:TimeZone"] = "UTC" };

    /// <summary>Each delivery's local date and the days its papers are shown from: "10-25: 10-24 10-25".</summary>
    private async Task<IReadOnlyList<string>> DeliveredPaperDaysAsync(long subscriber) => await _database.QueryAsync<string>("""
        SELECT to_char(d.day, 'MM-DD') || ': ' ||
               (SELECT string_agg(DISTINCT to_char((p->>'day')::date, 'MM-DD'), ' ') FROM jsonb_array_elements(d.papers) AS p)
        FROM deliveries d WHERE d.subscriber_id = @subscriber ORDER BY d.day
        """, new { subscriber });

    private async Task<long> AddAsync(string email, string? timeZone, int? hour, string frequency = "daily", int? weekday = null, string topic = "lidar")
    {
        var (id, _) = await _database.AddSubscriberAsync(email, "active", maxPapers: null, topic);
        await _database.ExecuteAsync(
            "UPDATE subscribers SET time_zone = @timeZone, delivery_hour = @hour, frequency = @frequency, weekday = @weekday WHERE id = @id",
            new { id, timeZone, hour, frequency, weekday });
        return id;
    }
}
