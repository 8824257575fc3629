using Microsoft.Extensions.DependencyInjection;
using Subscriptions.Email;
using Subscriptions.Tests.Infrastructure;

namespace Subscriptions.Tests;

/// <summary>The SMTP connections kept open between messages, when the relay hangs up on them while they are idle.</summary>
public sealed class SmtpConnectionTests(TestDatabase database) : IClassFixture<TestDatabase>
{
    private static readonly TimeSpan RelayIdleTimeout = TimeSpan.FromSeconds(2);

    [Fact]
    public async Task AConnectionIdleLongerThanSmtpIdleTimeoutIsReplacedBeforeTheRelayHangsUpOnIt()
    {
        await using var smtp = await TestSmtpServer.StartNewAsync(RelayIdleTimeout);
        // No retries: the second message goes out on its first attempt or fails.
        await using var app = new TestApp(database, smtp, settings: Settings(idleTimeout: "00:00:01"));
        var sender = app.Services.GetRequiredService<IMailSender>();

        await sender.SendAsync(PlainMessages.To("first@example.org", "idle"), CancellationToken.None);
        await Task.Delay(RelayIdleTimeout * 2);
        await sender.SendAsync(PlainMessages.To("second@example.org", "idle"), CancellationToken.None);

        Assert.Single(smtp.MessagesTo("second@example.org"));
    }

    [Fact]
    public async Task WithoutItTheRelayHungUpAndTheMessageOnTheStaleConnectionFails()
    {
        // The same, with connections kept for an hour: shows that the relay above really hung up.
        await using var smtp = await TestSmtpServer.StartNewAsync(RelayIdleTimeout);
        await using var app = new TestApp(database, smtp, settings: Settings(idleTimeout: "01:00:00"));
        var sender = app.Services.GetRequiredService<IMailSender>();

        await sender.SendAsync(PlainMessages.To("first@example.org", "idle"), CancellationToken.None);
        await Task.Delay(RelayIdleTimeout * 2);
        await Assert.ThrowsAnyAsync<Exception>(() => sender.SendAsync(PlainMessages.To("second@example.org", "idle"), CancellationToken.None));

        Assert.Empty(smtp.MessagesTo("second@example.org"));
    }

    private static Dictionary<string, string?> Settings(string idleTimeout) => new()
    {
        ["Smtp:Connections"] = "1",
        ["Smtp:Retries"] = "0",
        ["Smtp:IdleTimeout"] = idleTimeout,
    };
}
