namespace Subscriptions.Infrastructure;

/// <summary>How long a queued email waits before its next attempt: the first delay, doubled per attempt, at most an hour.</summary>
internal static class RetryBackoff
{
    private static readonly TimeSpan Longest = TimeSpan.FromHours(1);

    public static TimeSpan After(int attempts, TimeSpan firstDelay)
    {
        var delay = firstDelay * Math.Pow(2, Math.Min(attempts - 1, 20));
        return delay < Longest ? delay : Longest;
    }
}
