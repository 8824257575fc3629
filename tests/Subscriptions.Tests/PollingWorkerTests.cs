using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Logging.Testing;
using Subscriptions.Infrastructure;
using Subscriptions.Tests.Infrastructure;

namespace Subscriptions.Tests;

/// <summary>How a background worker reports an outage that fails every round: the exception once, then a line a round, then the recovery.</summary>
public sealed class PollingWorkerTests
{
    [Fact]
    public async Task AnOutageIsLoggedWithItsExceptionOnceThenOneLineARoundThenItsEnd()
    {
        var logger = new FakeLogger();
        // Between the failures, rounds skipped because another instance held the round's lock: they say nothing of the outage.
        using var worker = new FailingThenWorking("fsfsfw", logger);

        await worker.StartAsync(CancellationToken.None);
        await Eventually.TrueAsync(() => worker.CompletedRounds >= 8, "eight rounds of the worker", TimeSpan.FromSeconds(10));
        await worker.StopAsync(CancellationToken.None);

        var records = logger.Collector.GetSnapshot();
        Assert.Collection(records,
            first =>
            {
                Assert.Equal(LogLevel.Error, first.Level);
                Assert.Equal("database unreachable (round 1)", first.Exception?.Message);
                Assert.StartsWith("FailingThenWorking failed; trying again in", first.Message, StringComparison.Ordinal);
            },
            second =>
            {
                Assert.Equal(LogLevel.Warning, second.Level);
                Assert.Null(second.Exception);
                Assert.StartsWith("FailingThenWorking failed again (2 times in a row; database unreachable (round 3))", second.Message, StringComparison.Ordinal);
            },
            third =>
            {
                Assert.Equal(LogLevel.Warning, third.Level);
                Assert.StartsWith("FailingThenWorking failed again (3 times in a row; database unreachable (round 5))", third.Message, StringComparison.Ordinal);
            },
            recovered =>
            {
                Assert.Equal(LogLevel.Information, recovered.Level);
                Assert.Equal("FailingThenWorking works again after 3 failures in a row", recovered.Message);
            });
    }

    private sealed class Signal : WakeSignal;

    /// <summary>
    /// Its rounds as <paramref name="rounds"/> says, one letter each: <c>f</c> fails, as against a database that is down;
    /// <c>s</c> is skipped, as when another instance holds the round's lock; <c>w</c> works. Then it works.
    /// </summary>
    private sealed class FailingThenWorking(string rounds, ILogger logger) : PollingWorker(new Signal(), logger)
    {
        private int _rounds;

        protected override TimeSpan PollInterval => TimeSpan.FromMilliseconds(10);

        protected override Task<bool> WorkAsync(CancellationToken stoppingToken) => (++_rounds <= rounds.Length ? rounds[_rounds - 1] : 'w') switch
        {
            'f' => throw new InvalidOperationException($"database unreachable (round {_rounds})"),
            's' => Task.FromResult(false),
            _ => Task.FromResult(true),
        };
    }
}
