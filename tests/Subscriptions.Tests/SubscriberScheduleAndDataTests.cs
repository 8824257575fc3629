using System.Net;
using System.Net.Http.Json;
using System.Xml.Linq;
using Dapper;
using Microsoft.Extensions.DependencyInjection;
using Subscriptions.Bounces;
using Subscriptions.Database;
using Subscriptions.Digest;
using Subscriptions.Subscribers;
using Subscriptions.Tests.Infrastructure;

namespace Subscriptions.Tests;

/// <summary>What a subscriber controls: delivery time and frequency, their feed, the public archive, their data.</summary>
public sealed class SubscriberScheduleAndDataTests : IAsyncLifetime
{
    private static readonly DateOnly Day = new(2026, 11, 25);
    private static readonly XNamespace Atom = "http://www.w3.org/2005/Atom";
    private readonly TestDatabase _database = new();
    private TestSmtpServer _smtp = null!;
    private TestApp _app = null!;
    private HttpClient _client = null!;

    public async Task InitializeAsync()
    {
        await _database.InitializeAsync();
        _smtp = await TestSmtpServer.StartNewAsync();
        _app = new TestApp(_database, _smtp, settings: new Dictionary<string, string?> { ["Digest:Schedule"] = "0 0 7 * * ?", ["Digest:TimeZone"] = "UTC" });
        _client = _app.CreatePlainClient();
        await _database.SaveDayAsync(Day, TestDatabase.LidarPaper);
    }

    public async Task DisposeAsync()
    {
        _client.Dispose();
        await _app.DisposeAsync();
        await _smtp.DisposeAsync();
        await _database.DisposeAsync();
        await PostgresServer.DropDatabaseAsync(_database.ConnectionString);
    }

    [Fact]
    public async Task SignupStoresTheChosenTimeZoneHourAndFrequencyByJsonAndByForm()
    {
        var json = await _client.PostAsJsonAsync("/subscriptions", new
        {
            email = "weekly@example.org",
            topics = new[] { "lidar" },
            timeZone = "America/New_York",
            deliveryHour = 6,
            frequency = "weekly",
            weekday = "Friday",
        });
        var form = await _client.PostFormAsync("/subscriptions",
            ("email", "form@example.org"), ("topics", "lidar"), ("timeZone", "Asia/Tokyo"), ("deliveryHour", "21"), ("frequency", "daily"), ("weekday", "monday"));
        var plain = await _client.SignUpAsync("plain@example.org", "lidar");

        Assert.Equal([HttpStatusCode.Accepted, HttpStatusCode.Accepted, HttpStatusCode.Accepted], [json.StatusCode, form.StatusCode, plain.StatusCode]);
        Assert.Equal(("America/New_York", 6, "weekly", 5), await ScheduleOfAsync("weekly@example.org"));
        Assert.Equal(("Asia/Tokyo", 21, "daily", null), await ScheduleOfAsync("form@example.org"));
        Assert.Equal((null, null, "daily", null), await ScheduleOfAsync("plain@example.org")); // the operator's defaults
    }

    public static TheoryData<string, string> BadDeliveryFields => new()
    {
        { """{"timeZone": "Mars/Olympus_Mons"}""", "timeZone" },
        { """{"timeZone": "W. Europe Standard Time"}""", "timeZone" },
        { """{"timeZone": "../../etc/passwd"}""", "timeZone" },
        { """{"timeZone": 5}""", "timeZone" },
        { """{"deliveryHour": 24}""", "deliveryHour" },
        { """{"deliveryHour": -1}""", "deliveryHour" },
        { """{"deliveryHour": "seven"}""", "deliveryHour" },
        { """{"deliveryHour": 7.5}""", "deliveryHour" },
        { """{"frequency": "hourly"}""", "frequency" },
        { """{"frequency": "weekly"}""", "weekday" },
        { """{"frequency": "weekly", "weekday": "funday"}""", "weekday" },
    };

    [Theory]
    [MemberData(nameof(BadDeliveryFields))]
    public async Task ABadDeliveryFieldIsRefusedNamingItAndNothingIsStored(string fields, string field)
    {
        var body = fields.Insert(1, """ "email": "bad-field@example.org", "topics": ["lidar"], """);
        using var content = new StringContent(body, System.Text.Encoding.UTF8, "application/json");

        var response = await _client.PostAsync("/subscriptions", content);

        Assert.Equal(HttpStatusCode.BadRequest, response.StatusCode);
        Assert.Equal("application/problem+json", response.Content.Headers.ContentType?.MediaType);
        var errors = (await response.ReadJsonAsync()).GetProperty("errors");
        Assert.False(string.IsNullOrWhiteSpace(errors.GetProperty(field)[0].GetString()));
        Assert.Null(await _database.SubscriberStatusAsync("bad-field@example.org"));
    }

    [Fact]
    public async Task PreferencesChangeTheDeliveryTimeAndRefuseABadOneChangingNothing()
    {
        var (id, token) = await AddActiveAsync("prefs@example.org");

        var page = await (await _client.GetAsync($"/preferences?token={token}")).Content.ReadAsStringAsync();
        var saved = await _client.PostFormAsync($"/preferences?token={token}",
            ("topics", "lidar"), ("max_papers", "5"), ("timeZone", "Europe/Berlin"), ("deliveryHour", "8"), ("frequency", "weekly"), ("weekday", "sunday"));
        var refused = await _client.PostFormAsync($"/preferences?token={token}",
            ("topics", "radar"), ("max_papers", "5"), ("timeZone", "Europe/Nowhere"), ("deliveryHour", "8"), ("frequency", "daily"));
        var withoutDeliveryFields = await _client.PostFormAsync($"/preferences?token={token}", ("topics", "lidar"), ("max_papers", "6"));

        Assert.Contains("name=\"timeZone\"", page);
        Assert.Contains("/feed?token=", page);
        Assert.Contains("/preferences/export?token=", page);
        Assert.Contains("/preferences/erase?token=", page);
        Assert.Equal(HttpStatusCode.OK, saved.StatusCode);
        Assert.Equal(HttpStatusCode.BadRequest, refused.StatusCode);
        Assert.Contains("timeZone", await refused.Content.ReadAsStringAsync());
        Assert.Equal(HttpStatusCode.OK, withoutDeliveryFields.StatusCode);
        Assert.Equal(("Europe/Berlin", 8, "weekly", 7), await ScheduleOfAsync("prefs@example.org"));
        Assert.Equal(["lidar"], await _database.QueryAsync<string>("SELECT text FROM topics WHERE subscriber_id = @id", new { id }));
    }

    [Fact]
    public async Task TheSignupPageFillsTheTimeZoneWithItsOneAllowedScript()
    {
        var response = await _client.GetAsync("/");
        var html = await response.Content.ReadAsStringAsync();

        Assert.Contains($"<script>{Web.Pages.TimeZoneScript.Code}</script>", html);
        var csp = response.Headers.GetValues("Content-Security-Policy").Single();
        Assert.Contains($"script-src {Web.Pages.TimeZoneScript.CspSource};", csp);
        Assert.DoesNotContain("unsafe-inline'; style", csp.Split("script-src")[1].Split(';')[0]);
        Assert.Equal(1, html.Split("<script").Length - 1);
    }

    [Fact]
    public async Task TheFeedIsValidAtomOfTheSubscribersMatchesAndStopsWhenTheyUnsubscribe()
    {
        await AddActiveAsync("feed@example.org");
        await _app.Services.GetRequiredService<DigestRunner>().RunAsync(Day, ingestFirst: false, dryRun: false, _ => { }, CancellationToken.None);
        var email = Assert.Single(_smtp.MessagesTo("feed@example.org"));
        var feedLink = TestApp.LinkIn(email, "/feed");
        Assert.Contains($"{TestApp.BaseUrl}/papers/2026-11-25", email.TextBody);
        Assert.Contains("View this on the web", email.TextBody);

        var response = await _client.GetAsync(feedLink);

        Assert.Equal(HttpStatusCode.OK, response.StatusCode);
        Assert.Equal("application/atom+xml", response.Content.Headers.ContentType?.MediaType);
        var feed = XDocument.Parse(await response.Content.ReadAsStringAsync()).Root!;
        Assert.Equal(Atom + "feed", feed.Name);
        // RFC 4287: a feed has exactly one id, title and updated, a self link, and an author (or every entry has one).
        Assert.StartsWith("tag:", feed.Element(Atom + "id")!.Value, StringComparison.Ordinal);
        Assert.NotEmpty(feed.Element(Atom + "title")!.Value);
        Assert.True(DateTimeOffset.TryParse(feed.Element(Atom + "updated")!.Value, System.Globalization.CultureInfo.InvariantCulture, out _));
        Assert.Contains(feed.Elements(Atom + "link"), link => (string?)link.Attribute("rel") == "self");
        Assert.NotNull(feed.Element(Atom + "author")?.Element(Atom + "name"));
        var entry = Assert.Single(feed.Elements(Atom + "entry"));
        Assert.Equal("Lidar Odometry at Night", entry.Element(Atom + "title")!.Value);
        Assert.StartsWith("tag:", entry.Element(Atom + "id")!.Value, StringComparison.Ordinal);
        Assert.NotEmpty(entry.Element(Atom + "updated")!.Value);
        Assert.NotNull(entry.Element(Atom + "link")?.Attribute("href"));
        Assert.Contains("Matched your topic: lidar", entry.Element(Atom + "summary")!.Value);
        Assert.Equal("lidar", (string?)entry.Element(Atom + "category")?.Attribute("term"));

        // While the feed link works: a forged one, and the subscriber's own links of other purposes, do not.
        var forged = await _client.GetAsync("/feed?token=AAAA" + feedLink.Split("token=")[1][4..]);
        var preferencesToken = await _client.GetAsync("/feed?token=" + TestApp.LinkIn(email, "/preferences").Split("token=")[1]);
        var unsubscribeToken = await _client.GetAsync("/feed?token=" + TestApp.LinkIn(email, "/unsubscribe").Split("token=")[1]);
        Assert.Equal(HttpStatusCode.OK, (await _client.GetAsync(feedLink)).StatusCode);
        await _client.PostAsync(TestApp.LinkIn(email, "/unsubscribe"), null);
        var after = await _client.GetAsync(feedLink);
        Assert.Equal([HttpStatusCode.NotFound, HttpStatusCode.NotFound, HttpStatusCode.NotFound, HttpStatusCode.NotFound],
            [after.StatusCode, forged.StatusCode, preferencesToken.StatusCode, unsubscribeToken.StatusCode]);
        foreach (var refused in new[] { after, forged, preferencesToken, unsubscribeToken })
        {
            await AssertBareNotFoundAsync(refused, "token");
        }
    }

    [Fact]
    public async Task AFeedEntryWithoutALinkOfItsOwnLinksToTheDayThePaperWasListedOn()
    {
        var feedLink = await FeedLinkOfASubscriberSentTheDayAsync("tokyo@example.org");
        // A paper with no page or PDF (a file source's text page), delivered on the subscriber's next local date, as east of
        // the operator the papers of the 25th are on the 26th in Tokyo.
        await _database.ExecuteAsync("UPDATE papers SET page_url = NULL, pdf_url = NULL");
        await _database.ExecuteAsync("UPDATE deliveries SET day = day + 1 WHERE subscriber_id = (SELECT id FROM subscribers WHERE email = 'tokyo@example.org')");

        var entry = Assert.Single(XDocument.Parse(await _client.GetStringAsync(feedLink)).Root!.Elements(Atom + "entry"));

        // The email's "view this on the web" link goes there too (DigestEmails); the 26th had no papers, or other ones.
        Assert.Equal($"{TestApp.BaseUrl}/papers/2026-11-25", (string?)entry.Element(Atom + "link")?.Attribute("href"));
    }

    [Fact]
    public async Task TheFeedLeavesOutCharactersXmlCannotHoldThatEarlierVersionsStored()
    {
        var feedLink = await FeedLinkOfASubscriberSentTheDayAsync("oldtext@example.org");
        // As earlier versions could store them: a control character in a title, U+FFFF in a topic.
        await _database.ExecuteAsync("UPDATE papers SET title = title || chr(1)");
        await _database.ExecuteAsync("""
            UPDATE deliveries SET papers = replace(papers::text, '"lidar"', '"lidar\uffff"')::jsonb
            WHERE subscriber_id = (SELECT id FROM subscribers WHERE email = 'oldtext@example.org')
            """);

        var response = await _client.GetAsync(feedLink);

        Assert.Equal(HttpStatusCode.OK, response.StatusCode); // the writer threw: 500, for 30 days
        var entry = Assert.Single(XDocument.Parse(await response.Content.ReadAsStringAsync()).Root!.Elements(Atom + "entry"));
        Assert.Equal("Lidar Odometry at Night", entry.Element(Atom + "title")!.Value);
        Assert.Equal("lidar", (string?)entry.Element(Atom + "category")?.Attribute("term"));
    }

    [Fact]
    public async Task TheArchiveHasAPagePerDayAndAnIndexAndRefusesBadDatesWithABare404()
    {
        var index = await _client.GetAsync("/papers");
        var day = await _client.GetAsync("/papers/2026-11-25");

        Assert.Equal(HttpStatusCode.OK, index.StatusCode);
        Assert.Contains("href=\"/papers/2026-11-25\"", await index.Content.ReadAsStringAsync());
        Assert.Equal(HttpStatusCode.OK, day.StatusCode);
        Assert.Contains("Lidar Odometry at Night", await day.Content.ReadAsStringAsync());
        foreach (var bad in new[] { "2026-11-24", "2026-13-01", "25-11-2026", "yesterday", "2026-11-25x", "..%2F..%2Fetc" })
        {
            await AssertBareNotFoundAsync(await _client.GetAsync($"/papers/{bad}"), bad);
        }
    }

    [Fact]
    public async Task TheArchiveIndexIsKeptForAWhileAndTheDayPagesAreNot()
    {
        Assert.Contains("href=\"/papers/2026-11-25\"", await _client.GetStringAsync("/papers"));
        await _database.SaveDayAsync(Day.AddDays(1), TestDatabase.LidarPaper);

        // The index counts every day ever stored, for anyone who asks: a flood of requests reads it once a minute.
        Assert.DoesNotContain("href=\"/papers/2026-11-26\"", await _client.GetStringAsync("/papers"));
        Assert.Contains("Lidar Odometry at Night", await _client.GetStringAsync("/papers/2026-11-26"));
    }

    [Fact]
    public async Task DownloadMyDataHoldsTheAddressTopicsSettingsHistoryEveryDeliveryWithItsPapersAndTheRatings()
    {
        var (id, token) = await AddActiveAsync("export@example.org");
        await _database.ExecuteAsync("UPDATE subscribers SET time_zone = 'UTC', delivery_hour = 7, confirmed_at = now() WHERE email = 'export@example.org'");
        await _app.Services.GetRequiredService<DigestRunner>().RunAsync(Day, ingestFirst: false, dryRun: false, _ => { }, CancellationToken.None);
        var paperId = await _database.ScalarAsync<long>("SELECT id FROM papers WHERE title = 'Lidar Odometry at Night'");
        await _app.Services.GetRequiredService<FeedbackStore>().RateAsync(id, paperId, liked: false, CancellationToken.None);
        // The mail servers' replies the console shows are the subscriber's data too.
        await _database.ExecuteAsync("""
            UPDATE deliveries SET last_error = '452 4.2.2 mailbox full', attempts = 2 WHERE subscriber_id = @id;
            UPDATE subscribers SET permanent_failures = 1 WHERE id = @id;
            INSERT INTO email_outbox (subscriber_id, kind, status, attempts, next_attempt_at, last_error, created_at)
            VALUES (@id, 'already_subscribed', 'failed', 5, now(), '421 4.7.0 try again later', now());
            """, new { id });

        var response = await _client.GetAsync($"/preferences/export?token={token}");

        Assert.Equal(HttpStatusCode.OK, response.StatusCode);
        Assert.Contains("attachment", response.Content.Headers.ContentDisposition?.ToString() ?? response.Headers.GetValues("Content-Disposition").Single());
        var data = await response.ReadJsonAsync();
        Assert.Equal("export@example.org", data.GetProperty("email").GetString());
        Assert.Equal("lidar", data.GetProperty("topics")[0].GetString());
        Assert.Equal("UTC", data.GetProperty("settings").GetProperty("timeZone").GetString());
        Assert.Equal(7, data.GetProperty("settings").GetProperty("deliveryHour").GetInt32());
        Assert.Contains(data.GetProperty("history").EnumerateArray(), e => e.GetProperty("event").GetString() == "confirmed");
        var delivery = Assert.Single(data.GetProperty("deliveries").EnumerateArray());
        Assert.Equal("sent", delivery.GetProperty("status").GetString());
        Assert.Equal(("452 4.2.2 mailbox full", 2), (delivery.GetProperty("lastError").GetString(), delivery.GetProperty("attempts").GetInt32()));
        Assert.Equal(1, data.GetProperty("permanentFailures").GetInt32());
        var email = Assert.Single(data.GetProperty("emails").EnumerateArray());
        Assert.Equal(("421 4.7.0 try again later", 5), (email.GetProperty("lastError").GetString(), email.GetProperty("attempts").GetInt32()));
        Assert.Equal("Lidar Odometry at Night", delivery.GetProperty("papers")[0].GetProperty("title").GetString());
        Assert.Equal("lidar", delivery.GetProperty("papers")[0].GetProperty("matchedTopics")[0].GetString());
        var rating = Assert.Single(data.GetProperty("ratings").EnumerateArray());
        Assert.Equal(("Lidar Odometry at Night", false), (rating.GetProperty("title").GetString(), rating.GetProperty("liked").GetBoolean()));
        Assert.Equal(HttpStatusCode.NotFound, (await _client.GetAsync("/preferences/export?token=nonsense")).StatusCode);
    }

    [Fact]
    public async Task ASignupThatWaitedForAnErasureOfItsAddressKeepsTheAddressSuppressed()
    {
        var (id, _) = await AddActiveAsync("race@example.org");
        await _database.ExecuteAsync("INSERT INTO suppressions (email, reason, created_at) VALUES ('race@example.org', 'complaint', now())");
        // A sender of one of their messages holds their sending lock: the erasure, having deleted the row, waits for it.
        await using var sender = await _database.DataSource.OpenConnectionAsync();
        await using var sending = await sender.BeginTransactionAsync();
        await sender.ExecuteAsync(SubscriberDeletion.WaitForDeletionOfOne.Replace("$1", "@id", StringComparison.Ordinal), new { id }, sending);
        var erasing = _app.Services.GetRequiredService<SubscriberData>().EraseAsync(id, CancellationToken.None);
        await WaitForLockWaitersAsync(1);
        // The signup meets the row being deleted, and waits for the erasure to end.
        var signingUp = _client.SignUpAsync("race@example.org", "lidar");
        await WaitForLockWaitersAsync(2);

        await sending.CommitAsync();
        Assert.True(await erasing);
        Assert.Equal(HttpStatusCode.Accepted, (await signingUp).StatusCode);

        Assert.Equal(["race@example.org"], await _database.QueryAsync<string>("SELECT email FROM suppressions WHERE email LIKE '%race@%' OR email LIKE 'sha256:%'"));
        Assert.Equal(0, await _database.ScalarAsync<long>(
            "SELECT count(*) FROM email_outbox o JOIN subscribers s ON s.id = o.subscriber_id WHERE s.email = 'race@example.org'"));

        Task WaitForLockWaitersAsync(int count) => Eventually.TrueAsync(async () => await _database.ScalarAsync<long>(
                "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() AND wait_event_type = 'Lock'") >= count,
            $"{count} statement(s) waiting for a lock");
    }

    [Fact]
    public async Task DeleteEverythingAsksFirstThenRemovesAllButAHashedSuppression()
    {
        var (id, token) = await AddActiveAsync("erase@example.org");
        await _app.Services.GetRequiredService<DigestRunner>().RunAsync(Day, ingestFirst: false, dryRun: false, _ => { }, CancellationToken.None);
        await _database.ExecuteAsync("""
            INSERT INTO suppressions (email, reason, created_at) VALUES ('erase@example.org', 'complaint', now());
            INSERT INTO bounce_events (email, kind, source, received_at) VALUES ('erase@example.org', 'complaint', 'webhook', now());
            INSERT INTO email_outbox (subscriber_id, kind, next_attempt_at, created_at) VALUES (@id, 'confirmation', now() + interval '1 hour', now());
            INSERT INTO topics (subscriber_id, position, text) VALUES (@id, 1, 'what erase@ alone typed');
            INSERT INTO topic_embeddings (topic, model, vector) VALUES ('what erase@ alone typed', 'test', '{1}'), ('lidar', 'test', '{1}')
                ON CONFLICT (topic) DO NOTHING;
            """, new { id });
        await AddActiveAsync("also-lidar@example.org"); // shares the topic "lidar"
        Assert.Equal(1, await _database.ScalarAsync<long>("SELECT count(*) FROM delivery_papers WHERE subscriber_id = @id", new { id }));

        var asked = await _client.PostAsync($"/preferences/erase?token={token}", null);
        Assert.Equal(HttpStatusCode.OK, asked.StatusCode);
        Assert.Contains("name=\"confirm\" value=\"yes\"", await asked.Content.ReadAsStringAsync());
        Assert.Equal("active", await _database.SubscriberStatusAsync("erase@example.org"));

        var erased = await _client.PostFormAsync($"/preferences/erase?token={token}", ("confirm", "yes"));

        Assert.Equal(HttpStatusCode.OK, erased.StatusCode);
        Assert.Contains("Everything is deleted", await erased.Content.ReadAsStringAsync());
        Assert.Equal(0, await _database.ScalarAsync<long>("""
            SELECT (SELECT count(*) FROM subscribers WHERE id = @id) + (SELECT count(*) FROM topics WHERE subscriber_id = @id)
                 + (SELECT count(*) FROM deliveries WHERE subscriber_id = @id) + (SELECT count(*) FROM email_outbox WHERE subscriber_id = @id)
                 + (SELECT count(*) FROM delivery_papers WHERE subscriber_id = @id)
                 + (SELECT count(*) FROM delivery_queue q WHERE NOT EXISTS (SELECT 1 FROM deliveries d WHERE d.id = q.delivery_id))
                 + (SELECT count(*) FROM bounce_events WHERE email LIKE '%erase@%') + (SELECT count(*) FROM suppressions WHERE email LIKE '%erase@%')
            """, new { id }));
        Assert.Equal(["complaint"], await _database.QueryAsync<string>("SELECT reason FROM suppressions WHERE email = @key",
            new { key = SubscriberData.ErasedKey("erase@example.org") }));
        // What they typed goes too, but for the words someone else still follows.
        Assert.Equal(["lidar"], await _database.QueryAsync<string>(
            "SELECT topic FROM topic_embeddings WHERE topic IN ('lidar', 'what erase@ alone typed')"));
        Assert.Equal(HttpStatusCode.NotFound, (await _client.GetAsync($"/preferences?token={token}")).StatusCode);

        // Signed up again, the address is still suppressed: no confirmation goes to it.
        Assert.Equal(HttpStatusCode.Accepted, (await _client.SignUpAsync("erase@example.org", "lidar")).StatusCode);
        Assert.Equal(1, await _database.ScalarAsync<long>("SELECT count(*) FROM suppressions WHERE email = 'erase@example.org'"));
        Assert.Equal(0, await _database.ScalarAsync<long>("SELECT count(*) FROM email_outbox"));
    }

    [Fact]
    public async Task ErasingASubscriberWhoseDeliveryASenderHasClaimedSendsThemNothingAndLeavesNoRows()
    {
        var (one, _) = await AddActiveAsync("one@example.org");
        var (other, _) = await AddActiveAsync("other@example.org");
        await using var app = new TestApp(_database, _smtp, settings: new Dictionary<string, string?>
        {
            ["Smtp:Connections"] = "1",
            ["Smtp:Timeout"] = "00:01:00", // the held message must not time out and be sent again while the test acts
            ["Digest:BatchSize"] = "10",
            ["Digest:Schedule"] = "0 0 7 * * ?",
        });
        _smtp.HoldAfter(0); // the first message waits at the server: both deliveries are claimed by then
        var run = app.Services.GetRequiredService<DigestRunner>().RunAsync(Day, ingestFirst: false, dryRun: false, _ => { }, CancellationToken.None);
        await Eventually.TrueAsync(() => _smtp.Held > 0, "the first message to be held", TimeSpan.FromSeconds(30));
        Assert.Equal(2, await _database.ScalarAsync<long>("SELECT count(*) FROM deliveries WHERE status = 'sending'"));
        // The run's two senders may each claim one delivery, and either may reach the mail server first: the subscriber
        // erased is the one whose message is not on the wire (erasing that one would wait for its send, as the next test shows).
        var heldAddress = Assert.Single(_smtp.HeldRecipients);
        var (sentId, sentAddress, erasedId, erasedAddress) = heldAddress == "one@example.org"
            ? (one, "one@example.org", other, "other@example.org")
            : (other, "other@example.org", one, "one@example.org");

        Assert.True(await app.Services.GetRequiredService<SubscriberData>().EraseAsync(erasedId, CancellationToken.None));
        _smtp.AcceptHeld();
        var summary = await run;

        Assert.Single(_smtp.MessagesTo(sentAddress));
        Assert.Empty(_smtp.MessagesTo(erasedAddress));
        Assert.Equal((1, 1), (summary.Sent, summary.Skipped));
        Assert.Equal(0, await _database.ScalarAsync<long>(
            "SELECT (SELECT count(*) FROM deliveries WHERE subscriber_id = @erasedId) + (SELECT count(*) FROM delivery_queue q LEFT JOIN deliveries d ON d.id = q.delivery_id WHERE d.id IS NULL)",
            new { erasedId }));
        Assert.Equal("sent", await _database.ScalarAsync<string>("SELECT status FROM deliveries WHERE subscriber_id = @sentId", new { sentId }));
    }

    [Fact]
    public async Task AnErasureDuringASendWaitsForItAndThenLeavesNoRows()
    {
        var (erased, _) = await AddActiveAsync("erased-while-sending@example.org");
        await using var app = new TestApp(_database, _smtp, settings: new Dictionary<string, string?>
        {
            ["Smtp:Connections"] = "1",
            ["Smtp:Timeout"] = "00:01:00", // the held message must not time out and be sent again while the test acts
            ["Digest:Schedule"] = "0 0 7 * * ?",
        });
        _smtp.HoldAfter(0); // the message is past its last check and on the wire
        var run = app.Services.GetRequiredService<DigestRunner>().RunAsync(Day, ingestFirst: false, dryRun: false, _ => { }, CancellationToken.None);
        await Eventually.TrueAsync(() => _smtp.Held > 0, "the message to be held", TimeSpan.FromSeconds(30));

        var erasure = app.Services.GetRequiredService<SubscriberData>().EraseAsync(erased, CancellationToken.None);
        await OneWaitsForTheDeletionLockAsync("the erasure to wait for the send in flight");
        Assert.False(erasure.IsCompleted);

        _smtp.AcceptHeld();
        var summary = await run;
        Assert.True(await erasure);

        Assert.Single(_smtp.MessagesTo("erased-while-sending@example.org")); // it was on its way before the erasure
        Assert.Equal(1, summary.Sent);
        Assert.Equal(0, await _database.ScalarAsync<long>(
            "SELECT (SELECT count(*) FROM deliveries WHERE subscriber_id = @erased) + (SELECT count(*) FROM delivery_queue)", new { erased }));
    }

    [Fact]
    public async Task ASlotPlannedWhileASubscriberIsBeingErasedWaitsAndLeavesThemNoDelivery()
    {
        var (erased, _) = await AddActiveAsync("erased-while-planning@example.org");
        var (kept, _) = await AddActiveAsync("kept@example.org");
        // An erasure in progress: its subscriber deleted, not yet committed, when the slot reads who is due.
        await using var erasure = await _database.DataSource.OpenConnectionAsync();
        await using var transaction = await erasure.BeginTransactionAsync();
        await erasure.ExecuteAsync("DELETE FROM subscribers WHERE id = @erased", new { erased }, transaction);

        var planning = _app.Services.GetRequiredService<DeliveryPlanner>().PlanSlotAsync(
            new DateTimeOffset(Day.ToDateTime(new TimeOnly(7, 0)), TimeSpan.Zero), papersDay: null, CancellationToken.None);
        await OneWaitsForTheDeletionLockAsync("the slot's deliveries to wait for the erasure");
        Assert.False(planning.IsCompleted);
        await transaction.CommitAsync();
        var plan = await planning;

        Assert.Equal((2, 1), (plan.Covered, plan.Added)); // both were due when the slot read them; only one still exists
        Assert.Equal([kept], await _database.QueryAsync<long>("SELECT subscriber_id FROM deliveries"));
        Assert.Equal([(1L, 1L)], await _database.QueryAsync<(long, long)>("SELECT (SELECT count(*) FROM delivery_queue), (SELECT count(*) FROM delivery_papers)"));
    }

    [Fact]
    public async Task AnErasureWaitingForASendInFlightHoldsUpNoPlanning()
    {
        var (id, _) = await AddActiveAsync("erased-while-sending@example.org");
        await using var sender = await _database.DataSource.OpenConnectionAsync();
        await using var sending = await sender.BeginTransactionAsync();
        await sender.ExecuteAsync(SubscriberDeletion.WaitForDeletionOfOne.Replace("$1", "@id", StringComparison.Ordinal), new { id }, sending);
        var erasure = _app.Services.GetRequiredService<SubscriberData>().EraseAsync(id, CancellationToken.None);
        await OneWaitsForTheDeletionLockAsync("the erasure to wait for the send in flight");

        // A batch of another slot's deliveries, as the planner starts one: it must not queue behind the waiting erasure.
        await using var batch = await _database.DataSource.OpenConnectionAsync();
        await using (var transaction = await batch.BeginTransactionAsync())
        {
            await batch.ExecuteAsync("SET LOCAL lock_timeout = '3s'", transaction: transaction);
            await batch.ExecuteAsync(SubscriberDeletion.WaitForDeletions, transaction: transaction);
            await transaction.CommitAsync();
        }
        Assert.False(erasure.IsCompleted);

        await sending.CommitAsync();
        Assert.True(await erasure);
        Assert.Equal(0, await _database.ScalarAsync<long>("SELECT count(*) FROM subscribers WHERE id = @id", new { id }));
    }

    [Fact]
    public async Task AnErasureWhileASlotIsBeingPlannedWaitsForItsBatchAndThenLeavesNoRows()
    {
        var (erased, _) = await AddActiveAsync("erased-while-planned@example.org");
        // A batch of the slot's deliveries being written, as the planner writes it, not yet committed.
        await using var batch = await _database.DataSource.OpenConnectionAsync();
        await using var transaction = await batch.BeginTransactionAsync();
        await batch.ExecuteAsync(Database.SubscriberDeletion.WaitForDeletions, transaction: transaction);
        await batch.ExecuteAsync("""
            WITH planned AS (
                INSERT INTO deliveries (subscriber_id, day, papers, next_attempt_at, created_at)
                VALUES (@erased, @Day, '[]', now(), now()) RETURNING id, subscriber_id, day
            ), queued AS (INSERT INTO delivery_queue (delivery_id, day) SELECT id, day FROM planned)
            INSERT INTO delivery_papers (subscriber_id, day, paper_ids) SELECT subscriber_id, day, '{}' FROM planned
            """, new { erased, Day }, transaction);

        var erasure = _app.Services.GetRequiredService<SubscriberData>().EraseAsync(erased, CancellationToken.None);
        await OneWaitsForTheDeletionLockAsync("the erasure to wait for the batch");
        Assert.False(erasure.IsCompleted);
        await transaction.CommitAsync();
        Assert.True(await erasure);

        Assert.Equal(0, await _database.ScalarAsync<long>(
            "SELECT (SELECT count(*) FROM deliveries) + (SELECT count(*) FROM delivery_queue) + (SELECT count(*) FROM delivery_papers)"));
    }

    [Fact]
    public async Task ABounceRecordedWhileItsSubscriberIsErasedLeavesTheAddressOnlyAsAHash()
    {
        var (id, _) = await AddActiveAsync("bounced-while-erased@example.org");
        // Holds the bounce's recording between its statements: it has recorded the event, and its suppression (the next
        // statement) waits for this lock; so does the erasure's first write, after the erasure has locked its subscriber.
        await using var holder = await _database.DataSource.OpenConnectionAsync();
        await using var holding = await holder.BeginTransactionAsync();
        await holder.ExecuteAsync("LOCK TABLE suppressions IN ACCESS EXCLUSIVE MODE", transaction: holding);

        var recording = _app.Services.GetRequiredService<SuppressionStore>().RecordAsync(
            [new BounceEvent(BounceKind.Hard, "bounced-while-erased@example.org", Status: "5.1.1")], SuppressionStore.WebhookSource, CancellationToken.None);
        await Eventually.TrueAsync(() => _database.SessionWaitsAsync("%WITH verdicts AS%"), "the recording to wait for the suppressions");
        var erasure = _app.Services.GetRequiredService<SubscriberData>().EraseAsync(id, CancellationToken.None);
        // For its subscriber's row (now) or for the suppressions (before).
        await Eventually.TrueAsync(
            async () => await _database.SessionWaitsAsync("SELECT email_key FROM subscribers%") || await _database.SessionWaitsAsync("WITH moved AS%"),
            "the erasure to wait");
        // Let go, the erasure ran to its end before the recording did, missing the bounce it had recorded, uncommitted, and
        // the recording then wrote the address's suppression. It must wait for the recording instead.
        await holding.CommitAsync();
        Assert.Equal(["bounced-while-erased@example.org"], (await recording).Suppressed);
        Assert.True(await erasure);

        Assert.Equal(0, await _database.ScalarAsync<long>("""
            SELECT (SELECT count(*) FROM subscribers WHERE id = @id)
                 + (SELECT count(*) FROM bounce_events WHERE email = 'bounced-while-erased@example.org')
                 + (SELECT count(*) FROM suppressions WHERE email = 'bounced-while-erased@example.org')
            """, new { id }));
        Assert.Equal("hard_bounce", await _database.ScalarAsync<string>(
            "SELECT reason FROM suppressions WHERE email = @erased", new { erased = SubscriberData.ErasedKey("bounced-while-erased@example.org") }));
    }

    /// <summary>Until one session of this database waits for an advisory lock (the subscriber-deletion lock, sql/0016).</summary>
    private Task OneWaitsForTheDeletionLockAsync(string waitingFor) =>
        Eventually.TrueAsync(async () => await _database.ScalarAsync<long>(
            "SELECT count(*) FROM pg_stat_activity WHERE wait_event = 'advisory' AND datname = current_database()") == 1,
            waitingFor, TimeSpan.FromSeconds(30));

    /// <summary>A 404 whose body (the service's generic problem answer, if any) says nothing about what was asked.</summary>
    private static async Task AssertBareNotFoundAsync(HttpResponseMessage response, string asked)
    {
        Assert.Equal(HttpStatusCode.NotFound, response.StatusCode);
        var body = await response.Content.ReadAsStringAsync();
        Assert.DoesNotContain(asked, body, StringComparison.OrdinalIgnoreCase);
        Assert.DoesNotContain("detail", body, StringComparison.OrdinalIgnoreCase);
    }

    /// <summary>The feed link in the day's email of a new subscriber to "lidar".</summary>
    private async Task<string> FeedLinkOfASubscriberSentTheDayAsync(string email)
    {
        await AddActiveAsync(email);
        await _app.Services.GetRequiredService<DigestRunner>().RunAsync(Day, ingestFirst: false, dryRun: false, _ => { }, CancellationToken.None);
        return TestApp.LinkIn(Assert.Single(_smtp.MessagesTo(email)), "/feed");
    }

    private async Task<(long Id, string Token)> AddActiveAsync(string email)
    {
        var (id, key) = await _database.AddSubscriberAsync(email, "active", maxPapers: null, "lidar");
        return (id, _app.Services.GetRequiredService<LinkTokens>().Create(LinkPurpose.Preferences, id, key));
    }

    private async Task<(string? TimeZone, int? Hour, string Frequency, int? Weekday)> ScheduleOfAsync(string email) =>
        (await _database.QueryAsync<(string?, int?, string, int?)>(
            "SELECT time_zone, delivery_hour::int, frequency, weekday::int FROM subscribers WHERE email = @email", new { email })).Single();
}
