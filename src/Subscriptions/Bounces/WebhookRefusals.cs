namespace Subscriptions.Bounces;

/// <summary>
/// Calls to the bounce webhook refused as unsigned or malformed. A provider whose calls are refused (a secret changed on one
/// side only) gives up on them, and bounces and complaints stop counting: the operator is told, at most once a minute,
/// since anyone can make such calls and must not be able to fill the log. Hand-written: the logging framework has no
/// rate limit of its own.
/// </summary>
internal sealed class WebhookRefusals(TimeProvider time, ILogger<WebhookRefusals> logger)
{
    private static readonly TimeSpan AtMostEvery = TimeSpan.FromMinutes(1);
    private long _refusedSinceWarning;
    private long _warnedAt;

    public void Refused(string reason, string? client)
    {
        Interlocked.Increment(ref _refusedSinceWarning);
        var warnedAt = Interlocked.Read(ref _warnedAt);
        var now = time.GetTimestamp();
        if ((warnedAt == 0 || time.GetElapsedTime(warnedAt, now) >= AtMostEvery) && Interlocked.CompareExchange(ref _warnedAt, now, warnedAt) == warnedAt)
        {
            logger.LogWarning(
                "Bounce webhook: refused {Count} call(s) since the last warning, the latest from {Client}: {Reason}. A provider whose calls are " +
                "refused stops sending them: check that Bounces:WebhookSecret is the same on both sides",
                Interlocked.Exchange(ref _refusedSinceWarning, 0), client ?? "an unknown address", reason);
        }
    }
}
