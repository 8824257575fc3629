using System.Diagnostics;
using Microsoft.Extensions.DependencyInjection;
using Subscriptions.Email;
using Subscriptions.Tests.Infrastructure;

namespace Subscriptions.Tests;

/// <summary><c>Smtp:MaxPerSecond</c>: an instance hands the relay no more messages per second than that, over all its connections.</summary>
public sealed class ThrottleTests(TestDatabase database) : IClassFixture<TestDatabase>, IAsyncLifetime
{
    private TestSmtpServer _smtp = null!;

    public async Task InitializeAsync() => _smtp = await TestSmtpServer.StartNewAsync();

    public async Task DisposeAsync() => await _smtp.DisposeAsync();

    [Fact]
    public async Task MessagesOverAllConnectionsTakeAtLeastTheTimeTheRateAllows()
    {
        const int messages = 16;
        const int perSecond = 5;
        await using var app = new TestApp(database, _smtp, settings: new Dictionary<string, string?>
        {
            ["Smtp:MaxPerSecond"] = perSecond.ToString(System.Globalization.CultureInfo.InvariantCulture),
            ["Smtp:Connections"] = "4",
        });
        var sender = app.Services.GetRequiredService<IMailSender>();

        var clock = Stopwatch.StartNew();
        await Task.WhenAll(Enumerable.Range(0, messages).Select(i => sender.SendAsync(PlainMessages.To($"rate{i}@example.org", "rate"), CancellationToken.None)));
        var elapsed = clock.Elapsed;

        Assert.Equal(messages, _smtp.Received.Count);
        // 16 at 5 a second: 5 at once, then 5, 5 and 1 as each second's permits come back. The limiter counts
        // in tenths of a second, so a second's permits can return after 0.9 s at the earliest.
        var windowsWaited = (messages + perSecond - 1) / perSecond - 1;
        Assert.True(elapsed >= TimeSpan.FromSeconds(windowsWaited * 0.9),
            $"{messages} messages at {perSecond} a second took {elapsed.TotalSeconds:F2} s; they cannot take less than {windowsWaited * 0.9:F1} s.");
    }
}
