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
        dovecot.DeliverBounce(_smtp.EnvelopeSenderOf(digest), "digest-alias@forwarder.example");
        dovecot.DeliverBounce(_smtp.EnvelopeSenderOf(confirmation).ToUpperInvariant(), "confirm-alias@forwarder.example");
        dovecot.DeliverBounce($"bounces+{forgedIdentity}.000000000000@subscriptions.test", "forged-alias@forwarder.example");
        // Anyone can write to the plain bounce address too: a report naming a subscriber's own address, and one returning the
        // Message-ID their digest would have had without a MAC (a number anyone can count up to), change nothing either.
        dovecot.DeliverBounce("bounces@subscriptions.test", "verp-forged@example.org");
        dovecot.DeliverBounce("bounces@subscriptions.test", "forged-alias@forwarder.example", returnedMessageId: $"{forgedIdentity}@subscriptions.test");
        await app.WaitForFreshRoundAsync<BounceMailboxWorker>();

        Assert.Equal("bounced", await database.SubscriberStatusAsync("verp-digest@example.org"));
        Assert.Equal("bounced", await database.SubscriberStatusAsync("verp-confirm@example.org"));
        Assert.Equal("active", await database.SubscriberStatusAsync("verp-forged@example.org"));
        Assert.Equal(["verp-confirm@example.org", "verp-digest@example.org"],
            await database.QueryAsync<string>("SELECT email FROM suppressions WHERE email LIKE 'verp-%' ORDER BY email"));
        // All five were readable reports, and processed; the forged ones recorded against no one, not even the alias they name.
        Assert.Equal(5, (await dovecot.SubjectsAsync("Processed")).Count(subject => subject.StartsWith("VERP bounce", StringComparison.Ordinal)));
        Assert.Equal(0, await database.ScalarAsync<long>("SELECT count(*) FROM bounce_events WHERE email LIKE '%forged%'"));
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

    [GeneratedRegex(@"^bounces\+(?<identity>[a-z0-9.-]+)\.(?<mac>[0-9a-f]{12})@subscriptions\.test$")]
    private static partial Regex ReturnPath();
}
