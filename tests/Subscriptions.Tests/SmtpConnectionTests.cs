using Microsoft.Extensions.DependencyInjection;
using Subscriptions.Email;
using Subscriptions.Tests.Infrastructure;

namespace Subscriptions.Tests;

/// <summary>The SMTP connections kept open between messages, when the relay hangs up on them while they are idle.</summary>
public sealed class SmtpConnectionTests(TestDatabase database) : IClassFixture<TestDatabase>
{
    private static readonly TimeSpan RelayIdleTimeout = TimeSpan.FromSeconds(2);

    [Theory]
    [InlineData("00:00:01", true)]
    // Kept for an hour, the connection is used after the relay hung up on it: this shows that the relay really did.
    [InlineData("01:00:00", false)]
    public async Task AConnectionIdleLongerThanSmtpIdleTimeoutIsReplacedBeforeTheRelayHangsUpOnIt(string idleTimeout, bool replaced)
    {
        await using var smtp = await TestSmtpServer.StartNewAsync(RelayIdleTimeout);
        // No retries: the second message goes out on its first attempt or fails.
        await using var app = new TestApp(database, smtp, settings: Settings(idleTimeout));
        var sender = app.Services.GetRequiredService<IMailSender>();

        await sender.SendAsync(PlainMessages.To("first@example.org", "idle"), CancellationToken.None);
        // The relay hangs up after 2 s without a command: by then the connection has been idle past the 1 s setting too.
        await Eventually.TrueAsync(() => smtp.SessionsEnded == 1, "the relay to hang up on the idle connection", TimeSpan.FromSeconds(30));
        var second = sender.SendAsync(PlainMessages.To("second@example.org", "idle"), CancellationToken.None);

        if (replaced)
        {
            await second;
            Assert.Single(smtp.MessagesTo("second@example.org"));
        }
        else
        {
            await Assert.ThrowsAnyAsync<Exception>(() => second);
            Assert.Empty(smtp.MessagesTo("second@example.org"));
        }
    }

    private static Dictionary<string, string?> Settings(string idleTimeout) => new()
    {
        ["Smtp:Connections"] = "1",
        ["Smtp:Retries"] = "0",
        ["Smtp:IdleTimeout"] = idleTimeout,
    };
}
