using Microsoft.Extensions.Options;
using Quartz;
using Subscriptions.Observability;

namespace Subscriptions.Digest;

/// <summary>Plans the day's digest; every instance's <see cref="DeliveryWorker"/> then sends it.</summary>
[DisallowConcurrentExecution]
internal sealed class DailyDigestJob(
    DigestRunner runner, DeliverySignal signal, IOptions<DigestOptions> options, TimeProvider time, ServiceMetrics metrics, ILogger<DailyDigestJob> logger) : IJob
{
    public async ValueTask Execute(IJobExecutionContext context, CancellationToken cancellationToken = default)
    {
        var day = DigestSchedule.DayOfFiring(options.Value, time.GetUtcNow());
        logger.LogInformation("Daily digest for {Day} started (scheduled {Scheduled})", day, context.ScheduledFireTimeUtc);
        var started = time.GetTimestamp();
        await runner.PlanDayAsync(day, ingestFirst: true, message => logger.LogInformation("{Progress}", message), cancellationToken);
        metrics.DigestRunFinished(time.GetElapsedTime(started));
        signal.Wake();
    }
}
