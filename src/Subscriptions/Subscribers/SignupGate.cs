using System.Threading.RateLimiting;

namespace Subscriptions.Subscribers;

/// <summary>
/// Signups that reach the database at once: twice as many as there are cores, the rest waiting their turn in order (after
/// the per-client limit has let them through). Under a burst of 20 connections, 20 signups each holding a PostgreSQL
/// backend left two cores switching between ~25 busy processes: p99 101 ms, against 14 ms when only 6 database connections
/// could be open (README, "Signups under a burst"). At most <see cref="DefaultQueueLimit"/> wait: past that (some seconds
/// of signups at the rates measured), a signup is answered 503 at once rather than held with its connection for as long
/// as the burst lasts.
/// </summary>
internal sealed class SignupGate : IDisposable
{
    public const int DefaultQueueLimit = 1_000;

    private readonly ConcurrencyLimiter _limiter;

    public SignupGate()
        : this(2 * Environment.ProcessorCount, DefaultQueueLimit)
    {
    }

    internal SignupGate(int permits, int queueLimit) => _limiter = new(new ConcurrencyLimiterOptions
    {
        PermitLimit = permits,
        QueueLimit = queueLimit,
        QueueProcessingOrder = QueueProcessingOrder.OldestFirst,
    });

    /// <summary>Waits for a turn; disposing the lease hands it to the next. <see cref="SignupsQueueFullException"/> when too many wait already.</summary>
    public async ValueTask<RateLimitLease> EnterAsync(CancellationToken cancellationToken)
    {
        var lease = await _limiter.AcquireAsync(1, cancellationToken);
        if (!lease.IsAcquired)
        {
            lease.Dispose();
            throw new SignupsQueueFullException();
        }
        return lease;
    }

    public void Dispose() => _limiter.Dispose();
}

/// <summary>More signups wait for the database than <see cref="SignupGate"/> holds: answered 503 with Retry-After (RequestProblems).</summary>
internal sealed class SignupsQueueFullException() : Exception("Too many signups are waiting for the database.");
