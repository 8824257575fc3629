using System.ComponentModel.DataAnnotations;
using System.Text.RegularExpressions;
using Microsoft.Extensions.DependencyInjection;
using Subscriptions.Bounces;
using Subscriptions.Digest;
using Subscriptions.Email;
using Subscriptions.Tests.Infrastructure;

namespace Subscriptions.Tests;

/// <summary>
/// VERP (<c>Mail:BounceAddress</c>): every email leaves with a return path of its own, and a bounce that comes back
/// to it is pinned on the right subscriber even when it quotes nothing of the email and names an alias.
/// </summary>
public sealed partial class ReturnPathTests(TestDatabase database, DovecotServer dovecot) : IClassFixture<TestDatabase>, IClassFixture<DovecotServer>, IAsyncLifetime
{
    private static readonly DateOnly Day = new(2026, 11, 25);
    private TestSmtpServer _smtp = null!;

    public async Task InitializeAsync() => _smtp = await TestSmtpServer.StartNewAsync();

    public async Task DisposeAsync() => await _smtp.DisposeAsync();

    [Fact]
    public async Task ABounceToAnEmailsReturnPathBouncesItsSubscriberAndAForgedOneChangesNothing()
    {
        var settings = new Dictionary<string, string?>(dovecot.Settings)
        {
            ["Mail:BounceAddress"] = "bounces@subscriptions.test",
            ["Bounces:PollInterval"] = "00:00:00.100",
        };
        await using var app = new TestApp(database, _smtp, settings: settings);
        using var client = app.CreatePlainClient();
        await database.SaveDayAsync(Day, TestDatabase.LidarPaper);
        await database.AddSubscriberAsync("verp-digest@example.org", "active", maxPapers: null, "lidar");
        await database.AddSubscriberAsync("verp-forged@example.org", "active", maxPapers: null, "lidar");

        await client.SignUpAsync("verp-confirm@example.org", "lidar");
        var confirmation = await _smtp.WaitForMessageToAsync("verp-confirm@example.org");
        // Its Message-ID, which resolves its bounce, is recorded after the server has it.
        await database.WaitForOutboxAsync("verp-confirm@example.org", "sent");
        await app.Services.GetRequiredService<DigestRunner>().RunAsync(Day, ingestFirst: false, dryRun: false, _ => { }, CancellationToken.None);
        var digest = Assert.Single(_smtp.MessagesTo("verp-digest@example.org"));
        var forgedDigest = Assert.Single(_smtp.MessagesTo("verp-forged@example.org"));

        // Each return path names its email (the left part of its Message-ID) and a MAC of that.
        var outboxId = await database.ScalarAsync<long>(
            "SELECT o.id FROM email_outbox o JOIN subscribers s ON s.id = o.subscriber_id WHERE s.email = 'verp-confirm@example.org'");
        var confirmationPath = ReturnPath().Match(_smtp.EnvelopeSenderOf(confirmation));
        Assert.True(confirmationPath.Success, _smtp.EnvelopeSenderOf(confirmation));
        Assert.Equal($"outbox-{outboxId}", confirmationPath.Groups["identity"].Value);
        var digestPath = ReturnPath().Match(_smtp.EnvelopeSenderOf(digest));
        Assert.True(digestPath.Success, _smtp.EnvelopeSenderOf(digest));
        var deliveryId = await database.ScalarAsync<long>(
            "SELECT d.id FROM deliveries d JOIN subscribers s ON s.id = d.subscriber_id WHERE s.email = 'verp-digest@example.org'");
        Assert.Equal($"delivery-{deliveryId}.20261125", digestPath.Groups["identity"].Value);
        Assert.NotEqual(digestPath.Groups["mac"].Value, confirmationPath.Groups["mac"].Value);
        // The headers are not the envelope's: From stays the list's address.
        Assert.Equal("papers@subscriptions.test", digest.From.Mailboxes.Single().Address);

        // Reports that quote nothing of the email and name a forwarding alias: only the return path says whose they are.
        var forgedIdentity = ReturnPath().Match(_smtp.EnvelopeSenderOf(forgedDigest)).Groups["identity"].Value;
        DeliverBounce(_smtp.EnvelopeSenderOf(digest), "digest-alias@forwarder.example");
        DeliverBounce(_smtp.EnvelopeSenderOf(confirmation).ToUpperInvariant(), "confirm-alias@forwarder.example");
        DeliverBounce($"bounces+{forgedIdentity}.000000000000@subscriptions.test", "forged-alias@forwarder.example");
        await app.WaitForFreshRoundAsync<BounceMailboxWorker>();

        Assert.Equal("bounced", await database.SubscriberStatusAsync("verp-digest@example.org"));
        Assert.Equal("bounced", await database.SubscriberStatusAsync("verp-confirm@example.org"));
        Assert.Equal("active", await database.SubscriberStatusAsync("verp-forged@example.org"));
        Assert.Equal(["verp-confirm@example.org", "verp-digest@example.org"],
            await database.QueryAsync<string>("SELECT email FROM suppressions WHERE email LIKE 'verp-%' ORDER BY email"));
        // All three were readable reports: processed, the forged one recorded against the alias it names, nobody of ours.
        Assert.Equal(3, (await dovecot.SubjectsAsync("Processed")).Count(subject => subject.StartsWith("VERP bounce", StringComparison.Ordinal)));
        Assert.Equal(1, await database.ScalarAsync<long>("SELECT count(*) FROM bounce_events WHERE email = 'forged-alias@forwarder.example'"));
    }

    [Fact]
    public async Task WithoutABounceAddressTheEnvelopeSenderIsTheFromAddress()
    {
        await using var app = new TestApp(database, _smtp);
        using var client = app.CreatePlainClient();

        await client.SignUpAsync("plain-envelope@example.org", "lidar");
        var confirmation = await _smtp.WaitForMessageToAsync("plain-envelope@example.org");

        Assert.Equal("papers@subscriptions.test", _smtp.EnvelopeSenderOf(confirmation));
    }

    [Theory]
    [InlineData("Bounces <bounces@example.org>")]
    [InlineData("bounces+tag@example.org")]
    [InlineData("a-very-long-bounce-box@example.org")]
    [InlineData("not an address")]
    public void AnUnusableBounceAddressIsRefusedByName(string address)
    {
        var options = new MailOptions { BounceAddress = address };

        var problems = options.Validate(new ValidationContext(options)).ToList();

        Assert.Equal(nameof(MailOptions.BounceAddress), Assert.Single(Assert.Single(problems).MemberNames));
    }

    [Theory]
    [InlineData(null)]
    [InlineData("bounces@example.org")]
    [InlineData("bouncebox1@example.org")]
    public void AUsableBounceAddressIsAccepted(string? address) =>
        Assert.Empty(new MailOptions { BounceAddress = address }.Validate(new ValidationContext(new MailOptions())));

    /// <summary>A Postfix-style DSN as it arrives in the bounce mailbox: addressed to the return path, with no returned message.</summary>
    private void DeliverBounce(string returnPath, string finalRecipient)
    {
        var file = Path.Combine(Path.GetTempPath(), $"verp-{Guid.NewGuid():N}.eml");
        File.WriteAllText(file, $"""
            Return-Path: <>
            Delivered-To: {returnPath}
            From: MAILER-DAEMON@forwarder.example (Mail Delivery System)
            To: {returnPath}
            Subject: VERP bounce for {finalRecipient}
            Date: Wed, 25 Nov 2026 08:00:00 +0000
            Message-ID: <{Guid.NewGuid():N}@forwarder.example>
            MIME-Version: 1.0
            Content-Type: multipart/report; report-type=delivery-status; boundary="dsn"

            --dsn
            Content-Type: text/plain

            The mail system could not deliver your message to {finalRecipient}.

            --dsn
            Content-Type: message/delivery-status

            Reporting-MTA: dns; forwarder.example

            Final-Recipient: rfc822; {finalRecipient}
            Action: failed
            Status: 5.1.1
            Diagnostic-Code: smtp; 550 5.1.1 user unknown

            --dsn--

            """.ReplaceLineEndings("\r\n"));
        dovecot.Deliver(file);
        File.Delete(file);
    }

    [GeneratedRegex(@"^bounces\+(?<identity>[a-z0-9.-]+)\.(?<mac>[0-9a-f]{12})@subscriptions\.test$")]
    private static partial Regex ReturnPath();
}
