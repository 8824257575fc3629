namespace Subscriptions.Infrastructure;

/// <summary>
/// A background worker that does whatever is due, then sleeps until its signal wakes it or the poll
/// interval passes. A failure (the database unreachable, most likely) is logged and tried again after
/// the interval: the work waits in the database until then. The first failure of a run of them is logged with
/// its exception; the next ones, one line each, and the recovery once: when a round has run again, not when it was
/// skipped because another instance was doing that work (which says nothing about whether it works here).
/// </summary>
internal abstract class PollingWorker(WakeSignal signal, ILogger logger) : BackgroundService
{
    private long _completedRounds;
    private int _failuresInARow;

    /// <summary>How many times <see cref="WorkAsync"/> has finished, successfully or not; tests wait on it instead of sleeping.</summary>
    public long CompletedRounds => Interlocked.Read(ref _completedRounds);

    protected abstract TimeSpan PollInterval { get; }

    /// <summary>Does all the work that is due now; false when it did not run because another instance was doing it.</summary>
    protected abstract Task<bool> WorkAsync(CancellationToken stoppingToken);

    protected sealed override async Task ExecuteAsync(CancellationToken stoppingToken)
    {
        while (!stoppingToken.IsCancellationRequested)
        {
            try
            {
                if (await WorkAsync(stoppingToken) && _failuresInARow > 0)
                {
                    logger.LogInformation("{Worker} works again after {Failures} failures in a row", GetType().Name, _failuresInARow);
                    _failuresInARow = 0;
                }
            }
            catch (OperationCanceledException) when (stoppingToken.IsCancellationRequested)
            {
                return;
            }
            catch (Exception e)
            {
                // An outage fails every round (five a second at the tests' poll interval): the stack trace once, not each time.
                if (_failuresInARow++ == 0)
                {
                    logger.LogError(e, "{Worker} failed; trying again in {Interval}", GetType().Name, PollInterval);
                }
                else
                {
                    logger.LogWarning("{Worker} failed again ({Failures} times in a row; {Error}); trying again in {Interval}",
                        GetType().Name, _failuresInARow, e.Message, PollInterval);
                }
            }
            Interlocked.Increment(ref _completedRounds);

            try
            {
                await signal.WaitAsync(PollInterval, stoppingToken);
            }
            catch (OperationCanceledException)
            {
                return;
            }
        }
    }
}
