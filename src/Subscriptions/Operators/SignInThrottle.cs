using System.Threading.RateLimiting;

namespace Subscriptions.Operators;

/// <summary>
/// Sign-ins per operator address, from whichever clients: the per-client limit (<see cref="OperatorsExtensions.SignInsPerMinute"/>)
/// does not stop guesses at one account spread over many client addresses. Unknown addresses are counted alike, so a refusal
/// tells nothing about which addresses are operators. In memory, per instance (N instances allow N times as many); the
/// framework's partitioned limiter lets a window's counts go once the window has passed.
/// </summary>
internal sealed class SignInThrottle : IDisposable
{
    public const int AttemptsPerAddress = 10;
    public static readonly TimeSpan Window = TimeSpan.FromMinutes(15);

    private readonly PartitionedRateLimiter<string> _limiter = PartitionedRateLimiter.Create<string, string>(address =>
        RateLimitPartition.GetFixedWindowLimiter(address, _ => new FixedWindowRateLimiterOptions { PermitLimit = AttemptsPerAddress, Window = Window, QueueLimit = 0 }));

    /// <summary>Counts a sign-in for <paramref name="email"/>; false when that address has had its share of this window.</summary>
    public bool TryAttempt(string email)
    {
        using var lease = _limiter.AttemptAcquire(OperatorAccounts.Normalize(email));
        return lease.IsAcquired;
    }

    public void Dispose() => _limiter.Dispose();
}
