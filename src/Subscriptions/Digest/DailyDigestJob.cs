using Microsoft.Extensions.Options;
using Quartz;
using Subscriptions.Observability;

namespace Subscriptions.Digest;

/// <summary>
/// Plans the hourly slot that is due, and every slot since the last one planned (at most a day's worth) when
/// all instances were down meanwhile; the slot of the operator's default time ingests the day's papers
/// first. Every instance's <see cref="DeliveryWorker"/> then sends it.
/// </summary>
[DisallowConcurrentExecution]
internal sealed class DailyDigestJob(
    DigestRunner runner, DeliveryPlanner planner, DeliverySignal signal, IOptions<DigestOptions> options, TimeProvider time, ServiceMetrics metrics,
    ILogger<DailyDigestJob> logger) : IJob
{
    private static readonly TimeSpan CatchUpAtMost = TimeSpan.FromHours(23);

    public async ValueTask Execute(IJobExecutionContext context, CancellationToken cancellationToken = default)
    {
        var digest = options.Value;
        var current = DeliverySlots.SlotOf(time.GetUtcNow());
        var first = await planner.LastScheduledSlotAsync(current, cancellationToken) is { } last && last < current
            ? (last + DeliverySlots.Length > current - CatchUpAtMost ? last + DeliverySlots.Length : current - CatchUpAtMost)
            : current;
        for (var slot = first; slot <= current; slot += DeliverySlots.Length)
        {
            var isDefaultSlot = slot == DigestSchedule.DefaultSlot(digest, DigestSchedule.LocalDate(digest, slot));
            logger.LogInformation("Digest slot {Slot:O} started (scheduled {Scheduled:O}){Ingest}", slot, context.ScheduledFireTimeUtc,
                isDefaultSlot ? ", ingesting the day's papers first" : "");
            var started = time.GetTimestamp();
            await runner.PlanSlotAsync(slot, papersDay: null, ingestFirst: isDefaultSlot,
                message => logger.LogInformation("{Progress}", message), cancellationToken, bySchedule: true);
            metrics.DigestRunFinished(time.GetElapsedTime(started));
            signal.Wake();
        }
    }
}
