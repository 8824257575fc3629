using Microsoft.Extensions.Options;
using Quartz;

namespace Subscriptions.Digest;

/// <summary>Plans the day's digest; every instance's <see cref="DeliveryWorker"/> then sends it.</summary>
[DisallowConcurrentExecution]
internal sealed class DailyDigestJob(DigestRunner runner, DeliverySignal signal, IOptions<DigestOptions> options, TimeProvider time, ILogger<DailyDigestJob> logger) : IJob
{
    public async ValueTask Execute(IJobExecutionContext context, CancellationToken cancellationToken = default)
    {
        var day = DigestSchedule.DayOfFiring(options.Value, time.GetUtcNow());
        logger.LogInformation("Daily digest for {Day} started (scheduled {Scheduled})", day, context.ScheduledFireTimeUtc);
        await runner.PlanDayAsync(day, ingestFirst: true, message => logger.LogInformation("{Progress}", message), cancellationToken);
        signal.Wake();
    }
}
