using System.Net;
using System.Text;
using Microsoft.Extensions.DependencyInjection;
using SmtpServer.Protocol;
using Subscriptions.Digest;
using Subscriptions.Papers;
using Subscriptions.Subscribers;
using Subscriptions.Tests.Infrastructure;

namespace Subscriptions.Tests;

/// <summary>The daily digest end to end: real PostgreSQL, a real SMTP server, the app's own links.</summary>
public sealed class DigestTests : IAsyncLifetime
{
    private static readonly DateOnly Day = new(2026, 11, 25);
    private readonly TestDatabase _database = new();
    private TestSmtpServer _smtp = null!;

    public async Task InitializeAsync()
    {
        await _database.InitializeAsync(); // a database of its own: every active subscriber takes part in a run
        _smtp = await TestSmtpServer.StartNewAsync();
        await using var app = new TestApp(_database);
        await app.Services.GetRequiredService<PaperStore>().SaveDayAsync(Day, "huggingface", [
            PaperRecord.Create("2611.00001", "Depth Estimation <script>alert(1)</script> & Friends",
                "We estimate depth. " + string.Concat(Enumerable.Repeat("More detail about the method. ", 30)),
                ["Ada Lovelace", "Alan Turing", "Grace Hopper", "Emmy Noether", "Kurt Gödel"], null, 120),
            PaperRecord.Create("2611.00002", "Interpretability of Sparse Autoencoders", "Features in the residual stream.", ["Chris Olah"], null, 80),
            PaperRecord.Create("2611.00003", "Lidar Odometry at Night", "Registration of scans.", ["Ana Sousa"], null, 5),
        ], CancellationToken.None);
    }

    public async Task DisposeAsync()
    {
        await _smtp.DisposeAsync();
        await _database.DisposeAsync();
        await PostgresServer.DropDatabaseAsync(_database.ConnectionString);
    }

    [Fact]
    public async Task ATopicThatLooksLikeAnEncodedWordReachesTheSubjectAsTyped()
    {
        // "SGVsbG8=" is "Hello": written raw into the Subject, a mail client would show "Hello".
        const string topic = "\"=?utf-8?B?SGVsbG8=?=\" OR lidar";
        await AddSubscriberAsync("encoded@example.org", "active", topic);
        await using var app = new TestApp(_database, _smtp);

        await RunAsync(app);

        var message = Assert.Single(_smtp.MessagesTo("encoded@example.org"));
        var shown = message.Subject!.Replace("\u2060", "", StringComparison.Ordinal); // the invisible word joiner that neutralises it
        Assert.Contains("=?utf-8?B?SGVsbG8=?=", shown);
        Assert.DoesNotContain("Hello", shown);
    }

    [Fact]
    public async Task EachMatchingSubscriberGetsOnePersonalisedEmail()
    {
        await AddSubscriberAsync("ada@example.org", "active", "depth estimation", "interpretability");
        await AddSubscriberAsync("alan@example.org", "active", "lidar");
        await AddSubscriberAsync("nomatch@example.org", "active", "protein folding");
        await AddSubscriberAsync("pending@example.org", "pending", "lidar");
        await using var app = new TestApp(_database, _smtp, settings: new Dictionary<string, string?> { ["Mail:UnsubscribeMailto"] = "leave@subscriptions.test" });
        using var client = app.CreatePlainClient();

        var summary = await RunAsync(app);

        Assert.Equal((2, 2, 2, 0), (summary.Matched, summary.Planned, summary.Sent, summary.Failed));
        Assert.Equal(2, _smtp.Received.Count);
        Assert.Empty(_smtp.MessagesTo("nomatch@example.org"));
        Assert.Empty(_smtp.MessagesTo("pending@example.org"));

        var ada = Assert.Single(_smtp.MessagesTo("ada@example.org"));
        // The lidar paper comes by meaning, close to depth estimation, and says so.
        Assert.Equal("3 trending papers on depth estimation, interpretability — 25 Nov 2026", ada.Subject);
        Assert.Equal("papers@subscriptions.test", Assert.Single(ada.From.Mailboxes).Address);
        Assert.Equal("multipart/alternative", ada.Body?.ContentType.MimeType);
        Assert.NotNull(ada.TextBody);
        Assert.NotNull(ada.HtmlBody);
        Assert.False(string.IsNullOrEmpty(ada.MessageId));
        Assert.NotEqual(DateTimeOffset.MinValue, ada.Date);

        // Paper text is escaped in HTML, plain in text.
        Assert.Contains("Depth Estimation &lt;script&gt;alert(1)&lt;/script&gt; &amp; Friends", ada.HtmlBody);
        Assert.DoesNotContain("<script>", ada.HtmlBody);
        Assert.Contains("Depth Estimation <script>alert(1)</script> & Friends", ada.TextBody);
        Assert.Contains("Ada Lovelace, Alan Turing, Grace Hopper et al.", ada.TextBody);
        Assert.Contains("120 upvotes", ada.TextBody);
        Assert.Contains("Why: mentions depth estimation", ada.TextBody);
        Assert.Contains("Why: close to depth estimation", ada.TextBody);
        Assert.Contains("Why: close to depth estimation · <a href=", WebUtility.HtmlDecode(ada.HtmlBody));
        Assert.True(ada.HtmlBody!.All(char.IsAscii), "the HTML part is ASCII: character references for the rest");
        Assert.Contains($"More like this: {TestApp.BaseUrl}/feedback?token=", ada.TextBody);
        Assert.Contains($"Less like this: {TestApp.BaseUrl}/feedback?token=", ada.TextBody);
        Assert.Contains("href=\"https://arxiv.org/abs/2611.00001\"", ada.HtmlBody);
        Assert.Contains("…", ada.TextBody); // the long abstract is trimmed
        var text = ada.TextBody!;
        Assert.True(text.IndexOf("Depth Estimation", StringComparison.Ordinal) < text.IndexOf("Interpretability of", StringComparison.Ordinal));
        Assert.DoesNotContain("max-width:640px", ada.TextBody);
        Assert.Contains("max-width:640px", ada.HtmlBody);

        // Headers, as written on the wire and unfolded.
        var headers = UnfoldedHeaders(_smtp.RawOf(ada));
        var unsubscribeUrl = TestApp.BaseUrl + TestApp.LinkIn(ada, "/unsubscribe");
        Assert.Equal($"<{unsubscribeUrl}>, <mailto:leave@subscriptions.test?subject=unsubscribe>", headers["List-Unsubscribe"]);
        Assert.Equal("List-Unsubscribe=One-Click", headers["List-Unsubscribe-Post"]);
        Assert.Equal("Daily trending papers <daily-papers.subscriptions.test>", headers["List-Id"]);
        Assert.Equal("auto-generated", headers["Auto-Submitted"]);

        // The links work against the running app.
        Assert.Equal(HttpStatusCode.OK, (await client.GetAsync(TestApp.LinkIn(ada, "/preferences"))).StatusCode);
        Assert.Equal(HttpStatusCode.OK, (await client.GetAsync(TestApp.LinkIn(ada, "/unsubscribe"))).StatusCode);

        var alan = Assert.Single(_smtp.MessagesTo("alan@example.org"));
        Assert.Equal("1 trending paper on lidar — 25 Nov 2026", alan.Subject);

        // The record says what was sent.
        var rows = await _database.QueryAsync<(string Status, string MessageId)>("SELECT status, message_id FROM deliveries ORDER BY id");
        Assert.All(rows, row => Assert.Equal("sent", row.Status));
        Assert.Contains(rows, row => row.MessageId == ada.MessageId);

        // Running the day again plans nothing new and sends nothing.
        var again = await RunAsync(app);
        Assert.Equal((2, 0, 0), (again.Matched, again.Planned, again.Sent));
        Assert.Equal(2, _smtp.Received.Count);
    }

    [Fact]
    public async Task OverPlainHttpLinksTheDigestOffersNoOneClickUnsubscribeAndTheOperatorIsTold()
    {
        await AddSubscriberAsync("plain@example.org", "active", "lidar");
        await using var app = new TestApp(_database, _smtp, settings: new Dictionary<string, string?> { ["App:BaseUrl"] = "http://papers.example.org" });

        await RunAsync(app);

        var message = Assert.Single(_smtp.MessagesTo("plain@example.org"));
        var headers = UnfoldedHeaders(_smtp.RawOf(message));
        Assert.StartsWith("<http://papers.example.org/unsubscribe?token=", headers["List-Unsubscribe"], StringComparison.Ordinal);
        Assert.False(headers.ContainsKey("List-Unsubscribe-Post"), "RFC 8058's one-click needs an HTTPS link");
        var warning = Assert.Single(app.Logs.GetSnapshot(), log => log.Message.StartsWith("App:BaseUrl is http://papers.example.org", StringComparison.Ordinal));
        Assert.Contains("one-click unsubscribe", warning.Message, StringComparison.Ordinal);
    }

    [Fact]
    public async Task ARecipientRefusedWith550FailsAndRepeatedRefusalsBounce()
    {
        await AddSubscriberAsync("gone@example.org", "active", "lidar");
        await using var app = new TestApp(_database, _smtp, settings: new Dictionary<string, string?> { ["Digest:BounceAfter"] = "2" });
        _smtp.ReplyToNext(SmtpReplyCode.MailboxUnavailable, "5.1.1 No such mailbox", times: 2);

        var first = await RunAsync(app);

        Assert.Equal((0, 1), (first.Sent, first.Failed));
        var (status, error) = Assert.Single(await _database.QueryAsync<(string, string)>("SELECT status, last_error FROM deliveries"));
        Assert.Equal("failed", status);
        Assert.Contains("550", error);
        Assert.Contains("No such mailbox", error);
        Assert.Equal("active", await _database.SubscriberStatusAsync("gone@example.org"));

        await app.Services.GetRequiredService<PaperStore>().SaveDayAsync(Day.AddDays(1), "huggingface",
            [PaperRecord.Create("2611.00009", "Lidar Again", "More scans.", [], null, 1)], CancellationToken.None);
        await RunAsync(app, Day.AddDays(1));
        Assert.Equal("bounced", await _database.SubscriberStatusAsync("gone@example.org"));

        await app.Services.GetRequiredService<PaperStore>().SaveDayAsync(Day.AddDays(2), "huggingface",
            [PaperRecord.Create("2611.00010", "Lidar Once More", "Yet more scans.", [], null, 1)], CancellationToken.None);
        var third = await RunAsync(app, Day.AddDays(2));
        Assert.Equal(0, third.Matched);
        Assert.Equal(0, _smtp.UnusedScriptedReplies);
        Assert.Empty(_smtp.Received);
    }

    [Fact]
    public async Task AServerThatRefusesConnectionsAndComesBackGetsEachEmailOnce()
    {
        for (var i = 0; i < 6; i++)
        {
            await AddSubscriberAsync($"reader{i}@example.org", "active", "lidar");
        }
        await using var down = new TestSmtpServer(); // nothing listening yet
        await using var app = new TestApp(_database, down);

        var run = RunAsync(app);
        // A failed attempt is counted, or, once the circuit has opened (the senders' failures together), the delivery waits
        // without one and says why.
        await Eventually.TrueAsync(async () => await _database.ScalarAsync<long>("SELECT count(*) FROM deliveries WHERE last_error IS NOT NULL") > 0,
            "a delivery attempt against the server that is down", TimeSpan.FromSeconds(30));
        Assert.False(run.IsCompleted);
        await down.StartAsync();
        var summary = await run.WaitAsync(TimeSpan.FromSeconds(60));

        Assert.Equal((6, 0), (summary.Sent, summary.Failed));
        for (var i = 0; i < 6; i++)
        {
            Assert.Single(down.MessagesTo($"reader{i}@example.org"));
        }
        Assert.Equal(6, await _database.ScalarAsync<long>("SELECT count(*) FROM deliveries WHERE status = 'sent'"));
    }

    [Fact]
    public async Task TwoRunnersAtOnceStillSendEachSubscriberOneEmail()
    {
        for (var i = 0; i < 40; i++)
        {
            await AddSubscriberAsync($"twice{i}@example.org", "active", i % 2 == 0 ? "lidar" : "interpretability");
        }
        var batches = new Dictionary<string, string?> { ["Digest:BatchSize"] = "3", ["Smtp:Connections"] = "3" };
        await using var first = new TestApp(_database, _smtp, settings: batches);
        await using var second = new TestApp(_database, _smtp, settings: batches);

        var results = await Task.WhenAll(RunAsync(first), RunAsync(second));

        Assert.Equal(40, results.Sum(r => r.Planned));
        Assert.Equal(40, _smtp.Received.Count);
        Assert.Equal(40, await _database.ScalarAsync<long>("SELECT count(*) FROM deliveries WHERE status = 'sent'"));
        Assert.All(Enumerable.Range(0, 40), i => Assert.Single(_smtp.MessagesTo($"twice{i}@example.org")));
    }

    [Fact]
    public async Task OneClickUnsubscribeStopsTomorrowsDigest()
    {
        await AddSubscriberAsync("leaver@example.org", "active", "lidar");
        await AddSubscriberAsync("stayer@example.org", "active", "lidar");
        await using var app = new TestApp(_database, _smtp);
        using var client = app.CreatePlainClient();
        await RunAsync(app);
        var today = Assert.Single(_smtp.MessagesTo("leaver@example.org"));

        // What a mail client does with List-Unsubscribe and List-Unsubscribe-Post (RFC 8058).
        var link = today.Headers["List-Unsubscribe"]!.Trim('<', '>');
        var oneClick = await client.PostAsync(link, new StringContent("List-Unsubscribe=One-Click", Encoding.ASCII, "application/x-www-form-urlencoded"));
        Assert.Equal(HttpStatusCode.OK, oneClick.StatusCode);

        await app.Services.GetRequiredService<PaperStore>().SaveDayAsync(Day.AddDays(1), "huggingface",
            [PaperRecord.Create("2611.00011", "Lidar Tomorrow", "Scans.", [], null, 1)], CancellationToken.None);
        await RunAsync(app, Day.AddDays(1));

        Assert.Single(_smtp.MessagesTo("leaver@example.org"));
        Assert.Equal(2, _smtp.MessagesTo("stayer@example.org").Count);
    }

    [Fact]
    public async Task UnsubscribingAfterPlanningButBeforeSendingGetsNothing()
    {
        await AddSubscriberAsync("late@example.org", "active", "lidar");
        await using var app = new TestApp(_database, _smtp);
        await app.Services.GetRequiredService<DigestRunner>().PlanDayAsync(Day, ingestFirst: false, _ => { }, CancellationToken.None);
        await _database.ExecuteAsync("UPDATE subscribers SET status = 'unsubscribed' WHERE email = 'late@example.org'");

        var summary = await RunAsync(app);

        Assert.Equal(1, summary.Skipped);
        Assert.Empty(_smtp.Received);
        Assert.Equal("skipped", await _database.ScalarAsync<string>("SELECT status FROM deliveries"));
    }

    [Fact]
    public async Task ADryRunRendersButSendsAndRecordsNothing()
    {
        await AddSubscriberAsync("dry@example.org", "active", "lidar");
        await using var app = new TestApp(_database, _smtp);
        var lines = new List<string>();

        var summary = await app.Services.GetRequiredService<DigestRunner>().RunAsync(Day, ingestFirst: false, dryRun: true, lines.Add, CancellationToken.None);

        Assert.Equal(1, summary.Matched);
        Assert.Contains(lines, line => line.Contains("would send to dry@example.org: 1 trending paper on lidar", StringComparison.Ordinal));
        Assert.Equal(0, await _database.ScalarAsync<long>("SELECT count(*) FROM deliveries"));
        Assert.Empty(_smtp.Received);
    }

    [Fact]
    public async Task AKilledRunRestartedSendsEveryoneExactlyOnce()
    {
        const int subscribers = 12;
        for (var i = 0; i < subscribers; i++)
        {
            await AddSubscriberAsync($"crash{i}@example.org", "active", "lidar");
        }
        _smtp.HoldAfter(4);
        var environment = new Dictionary<string, string>
        {
            ["ConnectionStrings__Postgres"] = _database.ConnectionString,
            ["App__TokenSecret"] = "a-secret-for-the-crash-test-of-the-digest",
            ["Smtp__Host"] = "127.0.0.1",
            ["Smtp__Port"] = _smtp.Port.ToString(System.Globalization.CultureInfo.InvariantCulture),
            ["Smtp__Security"] = "None",
            ["Smtp__Connections"] = "2",
            ["Digest__BatchSize"] = "3",
            // A claim must outlast the longest send (10 s, and as long again waiting for a connection: 20 s); the test ends the
            // killed run's claims itself. No retry: a send slower than its timeout on a loaded machine would be sent twice.
            ["Digest__ClaimTimeout"] = "00:00:21",
            ["Smtp__Timeout"] = "00:00:10",
            ["Smtp__Retries"] = "0",
        };

        using (var first = ServiceBinary.Start(["digest", "--date", "2026-11-25", "--no-ingest"], environment))
        {
            await Eventually.TrueAsync(() => _smtp.Received.Count == 4 && _smtp.Held > 0,
                "the server to accept 4 messages and hold the next", TimeSpan.FromSeconds(30));
            // The server has a message before the run records it sent: killed in between, the run would leave the 4th
            // claimed and unrecorded, the one message a crash can send twice, and this test counts exactly.
            await _database.WaitForSentDeliveriesAsync(4, TimeSpan.FromSeconds(30));
            first.Kill(entireProcessTree: true);
            await first.WaitForExitAsync();
        }
        _smtp.DiscardHeld();
        Assert.Equal(4, _smtp.Received.Count);
        Assert.True(await _database.ScalarAsync<long>("SELECT count(*) FROM deliveries WHERE status = 'sending'") > 0,
            "The killed run should have left claimed deliveries behind.");
        // As when Digest:ClaimTimeout has passed since the crash.
        await _database.ExecuteAsync("UPDATE deliveries SET claimed_until = now() - interval '1 second' WHERE status = 'sending'");

        var second = await ServiceBinary.RunAsync(["digest", "--date", "2026-11-25", "--no-ingest"], environment);

        Assert.Equal(0, second.ExitCode);
        Assert.Contains("Planned: 12 subscribers have matching papers; 0 new deliveries (12 planned before)", second.Output);
        Assert.Contains("Sending:", second.Output);
        Assert.Contains("8 sent, 0 failed", second.Output);
        Assert.All(Enumerable.Range(0, subscribers), i => Assert.Single(_smtp.MessagesTo($"crash{i}@example.org")));
        Assert.Equal(subscribers, await _database.ScalarAsync<long>("SELECT count(*) FROM deliveries WHERE status = 'sent'"));
    }

    [Fact]
    public async Task ASenderWhoseClaimRanOutSendsNothingAnotherSenderHasTakenOver()
    {
        for (var i = 0; i < 6; i++)
        {
            await AddSubscriberAsync($"claimed{i}@example.org", "active", "lidar");
        }
        // One sender, which claims all six.
        await using var app = new TestApp(_database, _smtp, settings: OneSender(new() { ["Digest:BatchSize"] = "6" }));
        await app.Services.GetRequiredService<DigestRunner>().PlanDayAsync(Day, ingestFirst: false, _ => { }, CancellationToken.None);
        _smtp.HoldAfter(1);
        var counters = new SendCounters();

        var sending = app.Services.GetRequiredService<DeliverySender>().SendDueAsync([Day], counters, CancellationToken.None);
        // Meanwhile the batch's claim ran out (a throttled or slow batch can outlast Digest:ClaimTimeout), and another
        // instance's sender claimed what was left of it.
        await TakeOverAllButTheHeldMessageAsync();
        _smtp.AcceptHeld();
        await sending.WaitAsync(TimeSpan.FromSeconds(30));

        if (_smtp.Received.Count != 2)
        {
            // What went out, and what the deliveries say (how the race in OneSender's summary was found).
            var deliveries = await _database.QueryAsync<string>("""
                SELECT s.email || ' ' || d.status || ' ' || coalesce(d.claimed_by, '-') || ' ' || coalesce(d.message_id, '-')
                FROM deliveries d JOIN subscribers s ON s.id = d.subscriber_id ORDER BY d.id
                """);
            Assert.Fail($"received {string.Join(", ", _smtp.Received.Select(m => $"{m.To} {m.MessageId}"))}; held {string.Join(", ", _smtp.HeldRecipients)}; "
                + $"deliveries: {string.Join("; ", deliveries)}");
        }
        Assert.Equal(2, counters.Sent);
        Assert.Equal(4, await _database.ScalarAsync<long>(
            "SELECT count(*) FROM deliveries WHERE status = 'sending' AND claimed_by = 'another-instance#1'"));
        Assert.Contains(app.Logs.GetSnapshot(), log => log.Message.StartsWith("Sending with 1 senders, not 2", StringComparison.Ordinal));
    }

    [Theory]
    [InlineData(24, 4, "00:00:00.200")]
    // More than a batch handed back, and one look back in the pass: it goes on, batch after batch, until it has caught up
    // (before, a batch a poll interval, and the pass of ~4 s ended with the rest unsent).
    [InlineData(50, 8, "00:00:03")]
    public async Task DeliveriesAnotherInstanceHandsBackAreSentWithinThePollIntervalNotAfterThePass(int subscribers, int handedBack, string pollInterval)
    {
        for (var i = 0; i < subscribers; i++)
        {
            await AddSubscriberAsync($"handed{i:00}@example.org", "active", "lidar");
        }
        await using var app = new TestApp(_database, _smtp, settings: new Dictionary<string, string?>
        {
            ["Digest:BatchSize"] = "2",
            ["Smtp:Connections"] = "1",
            ["Digest:PollInterval"] = pollInterval,
        });
        await app.Services.GetRequiredService<DigestRunner>().PlanDayAsync(Day, ingestFirst: false, _ => { }, CancellationToken.None);
        // The first ones are another instance's batches, claimed before this pass began.
        await _database.ExecuteAsync("""
            UPDATE deliveries SET status = 'sending', claimed_by = 'another-instance#1', claimed_until = now() + interval '10 minutes'
            WHERE id IN (SELECT id FROM deliveries ORDER BY id LIMIT @handedBack)
            """, new { handedBack });
        _smtp.DelayReplies(TimeSpan.FromMilliseconds(100)); // a pass of 100 ms a message at least, over one connection
        var counters = new SendCounters();

        var sending = app.Services.GetRequiredService<DeliverySender>().SendDueAsync([Day], counters, CancellationToken.None);
        // That instance stops: it hands them back, behind where this pass's claims have got to.
        await Eventually.TrueAsync(() => _smtp.Received.Count >= 4, "this pass to have sent a few");
        await _database.ExecuteAsync("""
            UPDATE deliveries SET status = 'pending', claimed_by = NULL, claimed_until = NULL, next_attempt_at = now()
            WHERE claimed_by = 'another-instance#1'
            """);
        await sending.WaitAsync(TimeSpan.FromSeconds(60));

        // Before, they waited for the pass's end, and the next pass (the next poll, or never, for the digest verb's one pass).
        Assert.Equal(subscribers, counters.Sent);
        Assert.All(Enumerable.Range(0, subscribers), i => Assert.Single(_smtp.MessagesTo($"handed{i:00}@example.org")));
    }

    [Fact]
    public async Task AFailureToConnectIsNotRecordedOnADeliveryAnotherSenderHasTakenOver()
    {
        for (var i = 0; i < 6; i++)
        {
            await AddSubscriberAsync($"taken{i}@example.org", "active", "lidar");
        }
        await using var app = new TestApp(_database, _smtp, settings: OneSender(new()
        {
            ["Digest:BatchSize"] = "6",
            ["Smtp:Retries"] = "0",
            ["Smtp:BreakDuration"] = "00:00:01",
        }));
        await app.Services.GetRequiredService<DigestRunner>().PlanDayAsync(Day, ingestFirst: false, _ => { }, CancellationToken.None);
        _smtp.HoldAfter(1);

        var sending = app.Services.GetRequiredService<DeliverySender>().SendDueAsync([Day], new SendCounters(), CancellationToken.None);
        // The batch's claim ran out and another instance's sender took the rest; then the relay goes away, and this sender's
        // next connection fails before it has checked its claim.
        await TakeOverAllButTheHeldMessageAsync();
        await _smtp.StopAsync();
        await sending.WaitAsync(TimeSpan.FromSeconds(30));

        // Reset to pending with this sender's attempt, they could be claimed a third time while the other sent them.
        Assert.Equal(4, await _database.ScalarAsync<long>(
            "SELECT count(*) FROM deliveries WHERE status = 'sending' AND claimed_by = 'another-instance#1' AND attempts = 0 AND last_error IS NULL"));
    }

    [Fact]
    public async Task ADeliveryPlannedWithPapersThatCameAfterThePassLoadedTheDayShowsThem()
    {
        // A pass loads a day's papers once. A source that came late (the next hour's run fetches it) adds papers to the day and
        // plans deliveries with them, which the pass still running then claims: those papers were left out of the email, or
        // it went out with none.
        await AddSubscriberAsync("early0@example.org", "active", "lidar");
        await AddSubscriberAsync("early1@example.org", "active", "lidar");
        await using var app = new TestApp(_database, _smtp, settings: new Dictionary<string, string?> { ["Digest:BatchSize"] = "1", ["Smtp:Connections"] = "1" });
        var runner = app.Services.GetRequiredService<DigestRunner>();
        await runner.PlanDayAsync(Day, ingestFirst: false, _ => { }, CancellationToken.None);
        _smtp.HoldAfter(1);

        var sending = app.Services.GetRequiredService<DeliverySender>().SendDueAsync([Day], new SendCounters(), CancellationToken.None);
        await Eventually.TrueAsync(() => _smtp.Held == 1, "the server to hold the pass's second message");
        await app.Services.GetRequiredService<PaperStore>().SaveDayAsync(Day, "arxiv",
            [PaperRecord.Create("2611.00009", "Quantum Error Correction Thresholds", "Surface codes.", ["Lee Chen"], null, 3)], CancellationToken.None);
        await AddSubscriberAsync("late@example.org", "active", "quantum error correction");
        await runner.PlanDayAsync(Day, ingestFirst: false, _ => { }, CancellationToken.None);
        _smtp.AcceptHeld();
        await sending.WaitAsync(TimeSpan.FromSeconds(30));

        var late = Assert.Single(_smtp.MessagesTo("late@example.org"));
        Assert.Contains("Quantum Error Correction Thresholds", late.TextBody);
        Assert.StartsWith("1 trending paper", late.Subject, StringComparison.Ordinal);
    }

    [Fact]
    public async Task MoreSendersThanTheDatabasePoolCanServeStillSendTheDay()
    {
        // Four senders (two SMTP connections) and a pool of four: each sender held a connection for its pass and a claimed
        // delivery, and the one that then loaded the day's papers waited for a fifth, until the pool's timeout failed the run.
        var smallPool = new Npgsql.NpgsqlConnectionStringBuilder(_database.ConnectionString) { MaxPoolSize = 4 }.ConnectionString;
        await RunADayAndAssertEachGotOneEmailAsync("pooled", 8, new Dictionary<string, string?>
        {
            ["ConnectionStrings:Postgres"] = smallPool,
            ["Smtp:Connections"] = "2",
            ["Digest:BatchSize"] = "1",
        });
    }

    [Fact]
    public async Task ARunWaitingOutAPauseLooksAgainEverySecondNotTwentyTimes()
    {
        await AddSubscriberAsync("paused@example.org", "active", "lidar");
        await using var app = new TestApp(_database, _smtp);
        await _database.ExecuteAsync("UPDATE sending_control SET paused = true, changed_by = 'ops@example.org'");
        var progress = new System.Collections.Concurrent.ConcurrentQueue<string>();

        var run = app.Services.GetRequiredService<DigestRunner>().RunAsync(Day, ingestFirst: false, dryRun: false, progress.Enqueue, CancellationToken.None);
        await Eventually.TrueAsync(async () => await _database.ScalarAsync<long>("SELECT count(*) FROM deliveries") == 1, "the day to be planned");
        await Task.Delay(TimeSpan.FromSeconds(1));
        var before = await TransactionsAsync();
        await Task.Delay(TimeSpan.FromSeconds(4));
        var transactions = await TransactionsAsync() - before;

        // A pass is ~11 transactions (the queue's oldest, a claim per sender, the next due). Twenty passes a second made
        // 1,544 in these four seconds; one a second, with the app's other pollers, 145.
        Assert.True(transactions < 300, $"{transactions} transactions in 4 s while sending was paused");
        Assert.False(run.IsCompleted);
        Assert.Empty(_smtp.Received);
        // Said once, not at every pass.
        Assert.Equal(["Sending is paused (by ops@example.org, in the console): waiting until it is resumed there; Ctrl+C stops this run"],
            progress.Where(line => line.StartsWith("Sending is paused", StringComparison.Ordinal)));
        await _database.ExecuteAsync("UPDATE sending_control SET paused = false");
        var summary = await run.WaitAsync(TimeSpan.FromSeconds(30));
        Assert.Equal(1, summary.Sent);

        // Backends report their counts to the statistics at most once a second while busy: a rough count, but not 3x off.
        Task<long> TransactionsAsync() => _database.ScalarAsync<long>("SELECT xact_commit + xact_rollback FROM pg_stat_database WHERE datname = current_database()");
    }

    [Fact]
    public async Task ARelaySlowToAnswerGetsEachDigestOnce()
    {
        // Each message takes the relay 1.2 s of the 10 s a send may take; two senders share the one connection. (With 2 s, a
        // loaded test machine sometimes took longer: a send that times out is tried again, and a relay that had the message
        // by then gets it twice, with the same Message-ID.)
        _smtp.DelayReplies(TimeSpan.FromSeconds(1.2));
        await RunADayAndAssertEachGotOneEmailAsync("slow", 4, new Dictionary<string, string?>
        {
            ["Smtp:Connections"] = "1",
            ["Smtp:Timeout"] = "00:00:10",
            ["Digest:BatchSize"] = "1",
        });
    }

    [Theory]
    [InlineData("sender", SmtpReplyCode.MailboxNameNotAllowed, "5.7.1 Sender address rejected: not owned by user")]
    // A refusal of the recipient for the relay's own policy (RFC 3463's 5.7.x), not for anything about the address: a relay
    // that does not let this service relay refuses every subscriber alike.
    [InlineData("recipient", SmtpReplyCode.TransactionFailed, "5.7.1 <blameless@example.org>: Relay access denied")]
    [InlineData("recipient", SmtpReplyCode.AuthenticationRequired, "5.7.0 Authentication required")]
    // Amazon SES's answer for an unverified sender or return path (a VERP domain never verified there), without an enhanced code.
    [InlineData("recipient", SmtpReplyCode.TransactionFailed,
        "Message rejected: Email address is not verified. The following identities failed the check in region EU-WEST-1: bounces@unverified.example")]
    public async Task ARelayRefusingTheServiceHoldsTheDigestBackAndChargesNoSubscriber(string refused, SmtpReplyCode code, string reply)
    {
        await AddSubscriberAsync("blameless@example.org", "active", "lidar");
        await using var app = new TestApp(_database, _smtp);
        await app.Services.GetRequiredService<DigestRunner>().PlanDayAsync(Day, ingestFirst: false, _ => { }, CancellationToken.None);
        RefuseAt(refused, code, reply);

        var counters = new SendCounters();
        await app.Services.GetRequiredService<DeliverySender>().SendDueAsync([Day], counters, CancellationToken.None);

        Assert.Equal((0, 0, 1), (counters.Sent, counters.Failed, counters.Retrying));
        var (status, error) = Assert.Single(await _database.QueryAsync<(string, string)>("SELECT status, last_error FROM deliveries"));
        Assert.Equal("pending", status);
        Assert.Contains(reply[6..], error);
        Assert.Equal(0, await _database.ScalarAsync<int>("SELECT permanent_failures FROM subscribers WHERE email = 'blameless@example.org'"));

        RefuseAt(refused, null, "");
        var summary = await RunAsync(app);
        Assert.Equal((1, 0), (summary.Sent, summary.Failed));
        Assert.Single(_smtp.MessagesTo("blameless@example.org"));
    }

    [Theory]
    [InlineData("no AUTH offered")]
    [InlineData("no TLS to log in over")]
    [InlineData("530 to MAIL FROM")]
    public async Task ALoginTheRelayCannotTakeOpensTheCircuitInsteadOfChargingEverySubscriber(string failure)
    {
        // A relay that offers no AUTH to a username that is set (MailKit: NotSupportedException), or answers 530 for want of
        // a login or of STARTTLS (ServiceNotAuthenticatedException); a refused password (AuthenticationException) and an
        // untrusted certificate (SslHandshakeException) were charged alike: every delivery lost an attempt a round, one failed
        // login each, until the whole day had failed.
        for (var i = 0; i < 10; i++)
        {
            await AddSubscriberAsync($"login{i}@example.org", "active", "lidar");
        }
        var settings = new Dictionary<string, string?> { ["Smtp:Retries"] = "0", ["Smtp:Connections"] = "1" };
        if (failure != "530 to MAIL FROM")
        {
            settings["Smtp:Username"] = "papers";
            settings["Smtp:Password"] = "a password the relay cannot take";
            // Auto: STARTTLS if offered, and the test relay offers none. (The tests' default, None, allows a login in the clear.)
            settings["Smtp:Security"] = failure == "no TLS to log in over" ? "Auto" : "None";
        }
        else
        {
            _smtp.RefuseSenders(SmtpReplyCode.AuthenticationRequired, "5.7.57 Client not authenticated to send mail");
        }
        await using var app = new TestApp(_database, _smtp, settings: settings);
        await app.Services.GetRequiredService<DigestRunner>().PlanDayAsync(Day, ingestFirst: false, _ => { }, CancellationToken.None);

        using var pause = new CancellationTokenSource(TimeSpan.FromSeconds(5)); // the circuit's pause (30 s) is cut short here
        await app.Services.GetRequiredService<DeliverySender>().SendDueAsync([Day], new SendCounters(), pause.Token);

        // The circuit opens after MinimumThroughput (4) failures; the deliveries after them wait, charged nothing. Each of the
        // two senders (one connection) that meets the open circuit notes it on the delivery in hand: one of them, or both.
        Assert.Equal(4, await _database.ScalarAsync<long>("SELECT count(*) FROM deliveries WHERE attempts > 0"));
        Assert.InRange(await _database.ScalarAsync<long>("SELECT count(*) FROM deliveries WHERE attempts = 0 AND last_error LIKE '%circuit open%'"), 1, 2);
        Assert.Equal(0, await _database.ScalarAsync<long>("SELECT count(*) FROM deliveries WHERE status NOT IN ('pending', 'sending')"));
        Assert.Empty(_smtp.Received);
        if (failure == "no TLS to log in over")
        {
            // The password is not tried in the clear, and the error says so.
            Assert.Equal(4, await _database.ScalarAsync<long>("SELECT count(*) FROM deliveries WHERE last_error LIKE '%password is not sent in the clear%'"));
        }
    }

    [Fact]
    public async Task ARecipientRefusedForItsOwnPolicyIsChargedToTheSubscriber()
    {
        await AddSubscriberAsync("closed@example.org", "active", "lidar");
        await using var app = new TestApp(_database, _smtp);
        await app.Services.GetRequiredService<DigestRunner>().PlanDayAsync(Day, ingestFirst: false, _ => { }, CancellationToken.None);
        _smtp.RefuseRecipients(SmtpReplyCode.TransactionFailed, "5.7.1 <closed@example.org>: Recipient address rejected: Access denied");

        var counters = new SendCounters();
        await app.Services.GetRequiredService<DeliverySender>().SendDueAsync([Day], counters, CancellationToken.None);

        Assert.Equal((0, 1, 0), (counters.Sent, counters.Failed, counters.Retrying));
        Assert.Equal(1, await _database.ScalarAsync<int>("SELECT permanent_failures FROM subscribers WHERE email = 'closed@example.org'"));
    }

    /// <summary>
    /// These settings, with one SMTP connection and one sender on it (the pool leaves one connection to senders), so that
    /// the sender holds the whole batch. With the two senders a connection has, their claims could split the batch (each
    /// skips the rows the other has locked): then one's check of its next message, asked as its last was recorded, came
    /// before <see cref="TakeOverAllButTheHeldMessageAsync"/> took a claim that had not run out, and that message went,
    /// a third one (a full run saw it; batches of three made it every time). A claim that really runs out cannot be taken
    /// between that check and its send: the check asks that it hold for a wait for the connection and the send together.
    /// </summary>
    private Dictionary<string, string?> OneSender(Dictionary<string, string?> settings)
    {
        settings["Smtp:Connections"] = "1";
        settings["ConnectionStrings:Postgres"] = $"{_database.ConnectionString};Maximum Pool Size={DeliverySender.ConnectionsLeftToOthers + 1}";
        return settings;
    }

    /// <summary>Once the server holds a pass's second message: every other delivery it claimed is another instance's sender's now.</summary>
    private async Task TakeOverAllButTheHeldMessageAsync()
    {
        await Eventually.TrueAsync(() => _smtp.Held == 1, "the server to hold the batch's second message");
        await _database.ExecuteAsync("""
            UPDATE deliveries d SET claimed_by = 'another-instance#1', claimed_until = now() + interval '10 minutes'
            FROM subscribers s
            WHERE s.id = d.subscriber_id AND d.status = 'sending' AND s.email <> @held
            """, new { held = Assert.Single(_smtp.HeldRecipients) });
    }

    private void RefuseAt(string refused, SmtpReplyCode? code, string reply)
    {
        if (refused == "sender")
        {
            _smtp.RefuseSenders(code, reply);
        }
        else
        {
            _smtp.RefuseRecipients(code, reply);
        }
    }

    [Fact]
    public async Task ARefusalWhileTheSubscriberIsBeingErasedIsRecordedWithoutADeadlock()
    {
        await AddSubscriberAsync("erased@example.org", "active", "lidar");
        await using var app = new TestApp(_database, _smtp);
        await app.Services.GetRequiredService<DigestRunner>().PlanDayAsync(Day, ingestFirst: false, _ => { }, CancellationToken.None);
        var subscriberId = await _database.ScalarAsync<long>("SELECT id FROM subscribers WHERE email = 'erased@example.org'");
        _smtp.HoldAfter(0);
        var counters = new SendCounters();

        var sending = app.Services.GetRequiredService<DeliverySender>().SendDueAsync([Day], counters, CancellationToken.None);
        await Eventually.TrueAsync(() => _smtp.Held == 1, "the server to hold the digest");
        // The erasure locks the subscriber's row, then waits for the send in flight (the sender's lock, sql/0017).
        var erasing = app.Services.GetRequiredService<SubscriberData>().EraseAsync(subscriberId, CancellationToken.None);
        await Eventually.TrueAsync(async () => await _database.ScalarAsync<long>("SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND NOT granted") == 1,
            "the erasure to wait for the send");
        _smtp.DiscardHeld(SmtpReplyCode.MailboxUnavailable, "5.1.1 No such mailbox");

        Assert.True(await erasing.WaitAsync(TimeSpan.FromSeconds(30)));
        await sending.WaitAsync(TimeSpan.FromSeconds(30));
        Assert.Equal((0, 1), (counters.Sent, counters.Failed));
        Assert.Equal(0, await _database.ScalarAsync<long>("SELECT count(*) FROM subscribers WHERE email = 'erased@example.org'"));
        Assert.Equal(0, await _database.ScalarAsync<long>("SELECT count(*) FROM deliveries"));
    }

    /// <summary>Runs the day for <paramref name="subscribers"/> new subscribers with these settings: each gets exactly one email.</summary>
    private async Task RunADayAndAssertEachGotOneEmailAsync(string name, int subscribers, Dictionary<string, string?> settings)
    {
        for (var i = 0; i < subscribers; i++)
        {
            await AddSubscriberAsync($"{name}{i}@example.org", "active", "lidar");
        }
        await using var app = new TestApp(_database, _smtp, settings: settings);

        var summary = await RunAsync(app).WaitAsync(TimeSpan.FromSeconds(90));

        Assert.Equal((subscribers, 0), (summary.Sent, summary.Failed));
        Assert.All(Enumerable.Range(0, subscribers), i => Assert.Single(_smtp.MessagesTo($"{name}{i}@example.org")));
    }

    private static Task<DigestSummary> RunAsync(TestApp app, DateOnly? day = null) =>
        app.Services.GetRequiredService<DigestRunner>().RunAsync(day ?? Day, ingestFirst: false, dryRun: false, _ => { }, CancellationToken.None);

    private Task AddSubscriberAsync(string email, string status, params string[] topics) =>
        _database.AddSubscriberAsync(email, status, maxPapers: null, topics);

    private static Dictionary<string, string> UnfoldedHeaders(byte[] raw)
    {
        var text = Encoding.UTF8.GetString(raw);
        var head = text[..text.IndexOf("\r\n\r\n", StringComparison.Ordinal)].Replace("\r\n ", " ", StringComparison.Ordinal).Replace("\r\n\t", " ", StringComparison.Ordinal);
        return head.Split("\r\n").Select(line => line.Split(':', 2)).Where(parts => parts.Length == 2)
            .GroupBy(parts => parts[0], StringComparer.OrdinalIgnoreCase)
            .ToDictionary(group => group.Key, group => group.First()[1].Trim(), StringComparer.OrdinalIgnoreCase);
    }
}
