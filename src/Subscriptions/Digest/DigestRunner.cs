using System.Diagnostics;
using Microsoft.Extensions.Options;
using Subscriptions.Matching;
using Subscriptions.Observability;
using Subscriptions.Papers;

namespace Subscriptions.Digest;

/// <summary>What a run did; <see cref="Waiting"/> counts deliveries left to retry later.</summary>
internal sealed record DigestSummary(
    DateOnly Day, IReadOnlyList<SourceReport> Sources, long Matched, long Planned, long Sent, long Failed, long Skipped, long Waiting,
    TimeSpan Elapsed);

/// <summary>
/// One slot's whole digest: ingest, match and plan, then send until every delivery it planned is sent, failed or
/// skipped. The <c>digest</c> verb and the tests call it directly; the scheduled job calls <see cref="PlanSlotAsync"/>
/// and leaves sending to every instance's <see cref="DeliveryWorker"/>. A day's digest (<c>digest --date</c>) is the
/// slot of the operator's default delivery time that day.
/// </summary>
internal sealed class DigestRunner(
    PaperIngest ingest, DeliveryPlanner planner, DeliverySender sender, TopicMatcher matcher, DigestEmails emails, PaperStore papers,
    IOptions<DigestOptions> options, TimeProvider time, ServiceMetrics metrics, ILogger<DigestRunner> logger)
{
    private static readonly TimeSpan OneSecond = TimeSpan.FromSeconds(1);

    /// <summary>Plans the default slot of the day with that day's papers.</summary>
    public async Task<(IReadOnlyList<SourceReport> Sources, long Matched, long Planned)> PlanDayAsync(
        DateOnly day, bool ingestFirst, Action<string> progress, CancellationToken cancellationToken)
    {
        var (sources, plan) = await PlanSlotAsync(DigestSchedule.DefaultSlot(options.Value, day), day, ingestFirst, progress, cancellationToken);
        return (sources, plan.Matched, plan.Added);
    }

    /// <summary>
    /// Plans the slot, with the papers of <paramref name="papersDay"/> (default: those of the days the slot's schedule has
    /// ingested, see <see cref="DeliveryPlanner.PlanSlotAsync"/>); ingests that day (default: the latest default slot's) first when asked. <paramref name="bySchedule"/>:
    /// the hourly schedule plans it, not an operator.
    /// </summary>
    public async Task<(IReadOnlyList<SourceReport> Sources, SlotPlan Plan)> PlanSlotAsync(
        DateTimeOffset slot, DateOnly? papersDay, bool ingestFirst, Action<string> progress, CancellationToken cancellationToken, bool bySchedule = false)
    {
        var sources = await IngestAsync(papersDay ?? DigestSchedule.DayOfFiring(options.Value, slot), ingestFirst, progress, cancellationToken);
        var plan = await planner.PlanSlotAsync(slot, papersDay, cancellationToken, bySchedule);
        progress($"Slot {plan.Slot:yyyy-MM-dd HH:mm}Z, papers of {plan.PapersDay:yyyy-MM-dd}: {plan.Covered:N0} subscribers due");
        progress($"Planned: {plan.Matched:N0} subscribers have matching papers; {plan.Added:N0} new deliveries ({plan.Matched - plan.Added:N0} planned before)");
        logger.LogInformation("Digest slot {Slot:O} (papers of {Day}): {Covered} subscribers due, {Matched} matched, {Planned} deliveries planned",
            plan.Slot, plan.PapersDay, plan.Covered, plan.Matched, plan.Added);
        return (sources, plan);
    }

    public Task<DigestSummary> RunAsync(DateOnly day, bool ingestFirst, bool dryRun, Action<string> progress, CancellationToken cancellationToken) =>
        RunSlotAsync(DigestSchedule.DefaultSlot(options.Value, day), day, ingestFirst, dryRun, progress, cancellationToken);

    public async Task<DigestSummary> RunSlotAsync(
        DateTimeOffset slot, DateOnly? papersDay, bool ingestFirst, bool dryRun, Action<string> progress, CancellationToken cancellationToken)
    {
        var stopwatch = Stopwatch.StartNew();
        if (dryRun)
        {
            return await DryRunAsync(papersDay ?? DigestSchedule.DayOfFiring(options.Value, slot), ingestFirst, progress, stopwatch, cancellationToken);
        }

        var (sources, plan) = await PlanSlotAsync(slot, papersDay, ingestFirst, progress, cancellationToken);
        var counters = new SendCounters();
        using var reporter = new ProgressReporter(counters, progress);
        // The slot's deliveries, and any left open on the operator's date of it (a run stopped halfway).
        IReadOnlyList<DateOnly> days = [.. plan.DeliveryDays.Append(DigestSchedule.LocalDate(options.Value, plan.Slot)).Distinct()];
        var pauseReported = false;
        while (days.Count > 0 && !cancellationToken.IsCancellationRequested)
        {
            var actedOn = counters.ActedOn;
            await sender.SendDueAsync(days, counters, cancellationToken);
            if (await sender.NextDueAsync(days, cancellationToken) is not { } next)
            {
                break;
            }
            // A run that waits out a pause says so once, rather than sit silent after "Planned:".
            if (counters.ActedOn != actedOn)
            {
                pauseReported = false;
            }
            else if (!pauseReported && next <= time.GetUtcNow() && await sender.PausedByAsync(cancellationToken) is { } pausedBy)
            {
                progress($"Sending is paused (by {pausedBy}, in the console): waiting until it is resumed there; Ctrl+C stops this run");
                pauseReported = true;
            }
            // Some deliveries wait for a retry, or are being sent by another sender (or were claimed by one
            // that died): look again when the first is due, and at least every second meanwhile. One that is due
            // already is taken at once by the next pass, unless this pass took none at all (an operator has paused
            // sending): then a pass a second, not twenty.
            var wait = next - time.GetUtcNow();
            var overdueWait = counters.ActedOn == actedOn ? OneSecond : TimeSpan.FromMilliseconds(50);
            await Task.Delay(wait > TimeSpan.Zero ? (wait < OneSecond ? wait : OneSecond) : overdueWait, cancellationToken);
        }
        reporter.Report();
        var waiting = days.Count > 0 ? await sender.CountOpenAsync(days, CancellationToken.None) : 0;
        metrics.DigestRunFinished(stopwatch.Elapsed);
        return new DigestSummary(plan.PapersDay, sources, plan.Matched, plan.Added, counters.Sent, counters.Failed, counters.Skipped, waiting, stopwatch.Elapsed);
    }

    private async Task<DigestSummary> DryRunAsync(DateOnly day, bool ingestFirst, Action<string> progress, Stopwatch stopwatch, CancellationToken cancellationToken)
    {
        var sources = await IngestAsync(day, ingestFirst, progress, cancellationToken);
        var dayPapers = (await papers.PapersOfDayAsync(day, cancellationToken)).ToDictionary(paper => paper.Id);
        long rendered = 0;
        // Nothing is sent or recorded: no delivery exists, and the key and delivery id are placeholders.
        var placeholderKey = new byte[Subscribers.LinkTokens.NonceLength];
        await foreach (var list in matcher.MatchAllAsync(day, cancellationToken))
        {
            using var message = emails.Render(deliveryId: 0, list.Email, list.SubscriberId, placeholderKey, day,
                [.. list.Papers.Select(PlannedPaper.From)], dayPapers);
            if (++rendered <= 3)
            {
                progress($"  would send to {list.Email}: {message.Subject}");
            }
        }
        progress($"Dry run: {rendered:N0} emails rendered, none sent, nothing recorded");
        return new DigestSummary(day, sources, rendered, 0, 0, 0, 0, 0, stopwatch.Elapsed);
    }

    private async Task<IReadOnlyList<SourceReport>> IngestAsync(DateOnly day, bool ingestFirst, Action<string> progress, CancellationToken cancellationToken)
    {
        if (!ingestFirst)
        {
            return [];
        }
        var sources = await ingest.IngestAsync(day, sources: null, file: null, cancellationToken);
        foreach (var report in sources)
        {
            progress(report.ToString());
        }
        return sources;
    }

    /// <summary>Prints the counts once a second while sending.</summary>
    private sealed class ProgressReporter : IDisposable
    {
        private readonly SendCounters _counters;
        private readonly Action<string> _progress;
        private readonly Stopwatch _clock = Stopwatch.StartNew();
        private readonly Timer _timer;
        private long _lastSent;

        public ProgressReporter(SendCounters counters, Action<string> progress)
        {
            _counters = counters;
            _progress = progress;
            _timer = new Timer(_ => Report(onlyWhenChanged: true), null, TimeSpan.FromSeconds(1), TimeSpan.FromSeconds(1));
        }

        public void Report(bool onlyWhenChanged = false)
        {
            var sent = _counters.Sent;
            if (onlyWhenChanged && sent == Interlocked.Exchange(ref _lastSent, sent))
            {
                return;
            }
            var seconds = Math.Max(_clock.Elapsed.TotalSeconds, 0.001);
            _progress($"Sending: {sent:N0} sent, {_counters.Failed:N0} failed, {_counters.Skipped:N0} skipped, " +
                $"{_counters.Retrying:N0} retries scheduled, {sent / seconds:N0}/s");
        }

        public void Dispose() => _timer.Dispose();
    }
}
