using System.Diagnostics;
using System.Net;
using Microsoft.Extensions.Logging;
using SmtpServer.Protocol;
using Subscriptions.Subscribers;
using Subscriptions.Tests.Infrastructure;

namespace Subscriptions.Tests;

/// <summary>The confirmation email survives a mail server that stumbles or is down, and goes out exactly once.</summary>
public sealed class SmtpFailureTests(TestDatabase database) : IClassFixture<TestDatabase>
{
    [Fact]
    public async Task ServerAnswering421OnceStillGetsTheConfirmationOnce()
    {
        await using var smtp = await TestSmtpServer.StartNewAsync();
        smtp.ReplyToNext(SmtpReplyCode.ServiceUnavailable, "Too busy, try again later");
        await using var app = new TestApp(database, smtp);
        using var client = app.CreatePlainClient();

        Assert.Equal(HttpStatusCode.Accepted, (await client.SignUpAsync("busy@example.org", "robotics")).StatusCode);

        await smtp.WaitForMessageToAsync("busy@example.org");
        await database.WaitForOutboxAsync("busy@example.org", "sent");
        Assert.Equal(0, smtp.UnusedScriptedReplies);
        // The retry happened inside the one send (Polly), not as a second pass of the outbox.
        Assert.Equal(1, await database.ScalarAsync<int>(
            "SELECT o.attempts FROM email_outbox o JOIN subscribers s ON s.id = o.subscriber_id WHERE s.email = 'busy@example.org'"));
        await app.WaitForFreshRoundAsync<EmailOutboxWorker>();
        Assert.Single(smtp.MessagesTo("busy@example.org"));
    }

    [Fact]
    public async Task ServerDownDuringSignupGetsTheConfirmationOnceItIsBack()
    {
        await using var smtp = new TestSmtpServer(); // port reserved, nothing listening yet
        await using var app = new TestApp(database, smtp);
        using var client = app.CreatePlainClient();

        var stopwatch = Stopwatch.StartNew();
        var response = await client.SignUpAsync("patient@example.org", "robotics");
        stopwatch.Stop();

        Assert.Equal(HttpStatusCode.Accepted, response.StatusCode);
        Assert.True(stopwatch.Elapsed < TimeSpan.FromSeconds(5), $"The signup waited {stopwatch.Elapsed} on the mail server.");
        Assert.Equal("pending", await database.SubscriberStatusAsync("patient@example.org"));
        await database.WaitForOutboxAsync("patient@example.org", "pending", minimumAttempts: 1);

        await smtp.StartAsync();

        var message = await smtp.WaitForMessageToAsync("patient@example.org");
        await database.WaitForOutboxAsync("patient@example.org", "sent");
        await app.WaitForFreshRoundAsync<EmailOutboxWorker>();
        Assert.Single(smtp.MessagesTo("patient@example.org"));

        Assert.Equal(HttpStatusCode.OK, (await client.GetAsync(TestApp.LinkIn(message, "/subscriptions/confirm"))).StatusCode);
        Assert.Equal("active", await database.SubscriberStatusAsync("patient@example.org"));
    }

    [Fact]
    public async Task ASignupIsAnsweredWhileTheRelayHoldsItsConfirmation()
    {
        // A relay that takes the message and never answers: a signup that sent its confirmation itself would wait on it
        // for Smtp:Timeout (30 s here), and longer with the retries.
        await using var smtp = await TestSmtpServer.StartNewAsync();
        smtp.HoldAfter(0);
        await using var app = new TestApp(database, smtp, settings: new Dictionary<string, string?> { ["Smtp:Timeout"] = "00:00:30" });
        using var client = app.CreatePlainClient();

        var stopwatch = Stopwatch.StartNew();
        var response = await client.SignUpAsync("held@example.org", "robotics");
        stopwatch.Stop();

        Assert.Equal(HttpStatusCode.Accepted, response.StatusCode);
        await Eventually.TrueAsync(() => smtp.Held == 1, "the relay to hold the confirmation");
        Assert.Equal(["held@example.org"], smtp.HeldRecipients);
        Assert.True(stopwatch.Elapsed < TimeSpan.FromSeconds(10), $"The signup waited {stopwatch.Elapsed} on the mail server.");
        smtp.DiscardHeld();
    }

    [Fact]
    public async Task ConfirmationsNotTriedWhileTheCircuitIsOpenCostNoAttempt()
    {
        await using var smtp = new TestSmtpServer(); // nothing listening: every connection is refused
        await using var app = new TestApp(database, smtp, settings: new Dictionary<string, string?> { ["Smtp:Retries"] = "0" });
        using var client = app.CreatePlainClient();

        for (var i = 0; i < 6; i++)
        {
            Assert.Equal(HttpStatusCode.Accepted, (await client.SignUpAsync($"outage{i}@example.org", "robotics")).StatusCode);
        }

        // Four refused connections open the circuit (MinimumThroughput); the two confirmations after them wait, charged nothing
        // (each used to lose an attempt, and an outage of some hours failed them for good).
        const string waiting = """
            SELECT count(*) FROM email_outbox o JOIN subscribers s ON s.id = o.subscriber_id
            WHERE s.email LIKE 'outage%' AND o.attempts = 0 AND o.last_error = 'the mail server is unavailable (circuit open)'
            """;
        await Eventually.TrueAsync(async () => await database.ScalarAsync<long>(waiting) == 2, "two confirmations to wait for the circuit");
        Assert.Equal(4, await database.ScalarAsync<long>(
            "SELECT sum(o.attempts) FROM email_outbox o JOIN subscribers s ON s.id = o.subscriber_id WHERE s.email LIKE 'outage%'"));
    }

    [Fact]
    public async Task PermanentRejectionIsRecordedAndNotRetried()
    {
        await using var smtp = await TestSmtpServer.StartNewAsync();
        smtp.ReplyToNext(SmtpReplyCode.MailboxUnavailable, "No such user here");
        await using var app = new TestApp(database, smtp);
        using var client = app.CreatePlainClient();

        await client.SignUpAsync("nobody@example.org", "robotics");

        var error = await database.WaitForOutboxAsync("nobody@example.org", "failed");
        Assert.Contains("550", error);
        Assert.Contains("No such user here", error);
        await app.WaitForFreshRoundAsync<EmailOutboxWorker>();
        Assert.Empty(smtp.MessagesTo("nobody@example.org"));
        Assert.Equal(1, await database.ScalarAsync<int>(
            "SELECT o.attempts FROM email_outbox o JOIN subscribers s ON s.id = o.subscriber_id WHERE s.email = 'nobody@example.org'"));
        // Anyone can sign up a made-up address: its refusal is a warning, as a digest's is, not an error that pages someone.
        var gaveUp = Assert.Single(app.Logs.GetSnapshot(), log => log.Message.StartsWith("Gave up on confirmation email", StringComparison.Ordinal));
        Assert.Equal(LogLevel.Warning, gaveUp.Level);
    }
}
