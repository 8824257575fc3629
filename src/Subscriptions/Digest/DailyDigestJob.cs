using Microsoft.Extensions.Options;
using Quartz;
using Subscriptions.Observability;
using Subscriptions.Papers;

namespace Subscriptions.Digest;

/// <summary>
/// Plans the hourly slot that is due, and every slot since the last one planned (at most a day's worth) when
/// all instances were down meanwhile; the slot of the operator's default time ingests the day's papers
/// first, and each slot after it until the next day's fetches again the sources that have no papers for the day.
/// Every instance's <see cref="DeliveryWorker"/> then sends it.
/// </summary>
[DisallowConcurrentExecution]
internal sealed class DailyDigestJob(
    DigestRunner runner, DeliveryPlanner planner, PaperIngest ingest, PaperStore papers, DeliverySignal signal, IOptions<DigestOptions> options,
    IOptions<PapersOptions> papersOptions, TimeProvider time, ServiceMetrics metrics, ILogger<DailyDigestJob> logger) : IJob
{
    private static readonly TimeSpan CatchUpAtMost = TimeSpan.FromHours(23);

    public async ValueTask Execute(IJobExecutionContext context, CancellationToken cancellationToken = default)
    {
        var digest = options.Value;
        var current = DeliverySlots.SlotOf(time.GetUtcNow());
        var first = current;
        if (await planner.LastScheduledSlotAsync(current, cancellationToken) is { } last && last < current)
        {
            var next = last + DeliverySlots.Length;
            first = next > current - CatchUpAtMost ? next : current - CatchUpAtMost;
            if (next < first)
            {
                logger.LogWarning(
                    "Digest slots {FirstSkipped:O} to {LastSkipped:O} were not planned: no instance ran then, and a start catches up {CatchUpHours} hours at most. " +
                    "`digest --at <slot>` plans one of them by hand",
                    next, first - DeliverySlots.Length, CatchUpAtMost.TotalHours);
            }
        }
        var fetched = new HashSet<DateOnly>(); // days whose sources this firing asked already (a catch-up plans several slots)
        for (var slot = first; slot <= current; slot += DeliverySlots.Length)
        {
            // The day whose papers the slot plans: that of the latest default slot (DeliveryPlanner).
            var date = DigestSchedule.DayOfFiring(digest, slot);
            var defaultSlot = DigestSchedule.DefaultSlot(digest, date);
            var isDefaultSlot = slot == defaultSlot;
            logger.LogInformation("Digest slot {Slot:O} started (scheduled {Scheduled:O}){Ingest}", slot, context.ScheduledFireTimeUtc,
                isDefaultSlot ? ", ingesting the day's papers first" : "");
            if (isDefaultSlot)
            {
                fetched.Add(date);
            }
            else if (fetched.Add(date))
            {
                await FetchMissingSourcesAsync(date, defaultSlot, cancellationToken);
            }
            var started = time.GetTimestamp();
            await runner.PlanSlotAsync(slot, papersDay: null, ingestFirst: isDefaultSlot,
                message => logger.LogInformation("{Progress}", message), cancellationToken, bySchedule: true);
            metrics.DigestRunFinished(time.GetElapsedTime(started));
            signal.Wake();
        }
    }

    /// <summary>
    /// The default slot's fetch may have failed (a source down, a timeout) or found nothing yet: the sources without papers
    /// for the day are asked again before each later slot until the next day's default one, or the day's papers would reach no one.
    /// </summary>
    private async Task FetchMissingSourcesAsync(DateOnly date, DateTimeOffset defaultSlot, CancellationToken cancellationToken)
    {
        var stored = await papers.SourcesOfDayAsync(date, cancellationToken);
        var missing = papersOptions.Value.SourceList.Where(source => !stored.Contains(source, StringComparer.OrdinalIgnoreCase)).ToList();
        if (missing.Count == 0)
        {
            return;
        }
        logger.LogInformation("No papers of {Date} from {Sources} since the fetch of {DefaultSlot:O}: fetching them again", date,
            string.Join(", ", missing), defaultSlot);
        await ingest.IngestAsync(date, missing, file: null, cancellationToken);
    }
}
