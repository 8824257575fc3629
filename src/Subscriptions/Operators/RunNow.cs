using System.Diagnostics;
using Subscriptions.Digest;
using Subscriptions.Observability;

namespace Subscriptions.Operators;

/// <summary>
/// The console's "run today's digest now": ingests and plans the day in the background of this instance, then
/// wakes its senders; every instance's senders (Digest:Enabled) share the sending, as after the scheduled run.
/// </summary>
internal sealed class RunNow(
    DigestRunner runner, DeliverySignal signal, Dashboard dashboard, ServiceMetrics metrics, IHostApplicationLifetime lifetime, ILogger<RunNow> logger)
{
    private int _running;

    public bool Running => Volatile.Read(ref _running) == 1;

    /// <summary>Starts the run; false when one started here is still planning.</summary>
    public bool TryStart(string requestedBy)
    {
        if (Interlocked.CompareExchange(ref _running, 1, 0) != 0)
        {
            return false;
        }
        var day = dashboard.Today;
        logger.LogInformation("Digest of {Day} started from the console by {Operator}", day, requestedBy);
        // Not tied to the request: the run goes on after the page has answered, until the process stops.
        _ = Task.Run(async () =>
        {
            try
            {
                var started = Stopwatch.GetTimestamp();
                await runner.PlanDayAsync(day, ingestFirst: true, message => logger.LogInformation("{Progress}", message), lifetime.ApplicationStopping);
                metrics.DigestRunFinished(Stopwatch.GetElapsedTime(started)); // its planning, as for the scheduled run
                signal.Wake();
            }
            catch (OperationCanceledException) when (lifetime.ApplicationStopping.IsCancellationRequested)
            {
                // Unlike a scheduled firing, no other instance takes it over: what is planned so far is sent, the rest waits for this.
                logger.LogError("Digest of {Day} started from the console was stopped with the service before it was planned; run it again", day);
            }
            catch (Exception e)
            {
                logger.LogError(e, "Digest of {Day} started from the console failed", day);
            }
            finally
            {
                Volatile.Write(ref _running, 0);
            }
        });
        return true;
    }
}
