using Subscriptions.Subscribers;

namespace Subscriptions.Tests;

public sealed class SignupGateTests
{
    [Fact]
    public async Task SignupsBeyondTwicePerCoreWaitTheirTurnInOrder()
    {
        using var gate = new SignupGate();
        var inside = new List<System.Threading.RateLimiting.RateLimitLease>();
        for (var i = 0; i < 2 * Environment.ProcessorCount; i++)
        {
            var lease = await gate.EnterAsync(CancellationToken.None);
            Assert.True(lease.IsAcquired);
            inside.Add(lease);
        }

        var first = gate.EnterAsync(CancellationToken.None).AsTask();
        var second = gate.EnterAsync(CancellationToken.None).AsTask();
        await Task.Delay(100);
        Assert.False(first.IsCompleted);
        Assert.False(second.IsCompleted);

        inside[0].Dispose();
        using var firstLease = await first.WaitAsync(TimeSpan.FromSeconds(10));
        Assert.True(firstLease.IsAcquired);
        Assert.False(second.IsCompleted);

        inside[1].Dispose();
        using var secondLease = await second.WaitAsync(TimeSpan.FromSeconds(10));
        Assert.True(secondLease.IsAcquired);
        inside.Skip(2).ToList().ForEach(lease => lease.Dispose());
    }
}
