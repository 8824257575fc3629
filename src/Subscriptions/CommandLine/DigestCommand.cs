using System.CommandLine;
using System.Globalization;
using Microsoft.Extensions.Options;
using Subscriptions.Database;
using Subscriptions.Digest;
using Subscriptions.Infrastructure;

namespace Subscriptions.CommandLine;

internal static class DigestCommand
{
    public static Command Create()
    {
        var date = Verbs.DateOption("The day to digest: the slot of the default delivery time that day, with that day's papers (default: the day of the latest scheduled time).");
        var at = new Option<DateTimeOffset?>("--at")
        {
            Description = "Run the hourly slot of this instant (every subscriber whose delivery time falls in it), with the papers of the day of the latest default time at or before it.",
            HelpName = "INSTANT",
            CustomParser = result =>
            {
                var text = result.Tokens.Count == 1 ? result.Tokens[0].Value : "";
                if (DateTimeOffset.TryParse(text, CultureInfo.InvariantCulture, DateTimeStyles.AssumeUniversal, out var instant))
                {
                    return instant;
                }
                result.AddError($"--at {text}: expected an ISO 8601 instant, e.g. 2026-11-25T07:00:00Z");
                return null;
            },
        };
        var dryRun = new Option<bool>("--dry-run") { Description = "Render every email but send and record nothing." };
        var noIngest = new Option<bool>("--no-ingest") { Description = "Use the papers already stored instead of fetching the day's." };
        var command = new Command("digest", "Run one day's whole digest now (ingest, match, plan, send) with progress; returns when every delivery of the day is sent, failed or skipped.")
        {
            date, at, dryRun, noIngest,
        };
        command.Validators.Add(result =>
        {
            if (result.GetResult(date) is not null && result.GetResult(at) is not null)
            {
                result.AddError("--date and --at: give one or the other");
            }
            // A dry run renders the day's email for every active subscriber; it does not know a slot's subscribers.
            if (result.GetResult(at) is not null && result.GetValue(dryRun))
            {
                result.AddError("--dry-run renders a day's digest for every active subscriber (--date), not an hourly slot's (--at)");
            }
        });
        command.SetAction(async result =>
        {
            var host = await CommandHost.StartAsync(Verbs.Settings(result), services => services.AddDigest());
            // Ctrl+C and SIGTERM alike: finish the messages in flight, hand the other claims back, exit.
            using var stop = new StopSignals(() => Console.WriteLine("Stopping after the messages in flight; run digest again to finish the day."));
            var isDryRun = result.GetValue(dryRun);
            var options = host.Services.GetRequiredService<IOptions<DigestOptions>>().Value;
            var instant = result.GetValue(at);
            // An instant's papers are those of the latest default slot by its slot: a slot before the day's ingests none of the day's.
            var day = result.GetValue(date) ?? DigestSchedule.DayOfFiring(options, instant is { } given ? DeliverySlots.SlotOf(given) : DateTimeOffset.UtcNow);
            var slot = instant is { } moment ? DeliverySlots.SlotOf(moment) : DigestSchedule.DefaultSlot(options, day);
            // What makes planning a slot again add nothing is its deliveries, and Retention deletes them after a while.
            var kept = host.Services.GetRequiredService<IOptions<RetentionOptions>>().Value.Deliveries;
            if (!isDryRun && kept > TimeSpan.Zero && slot < DateTimeOffset.UtcNow - kept)
            {
                Console.Error.WriteLine($"The slot of {slot:yyyy-MM-dd HH:mm}Z is older than {RetentionOptions.Section}:{nameof(RetentionOptions.Deliveries)} " +
                    $"({kept.TotalDays:N0} days): its deliveries may be deleted, and planning it again would send it again.");
                host.Dispose();
                return Verbs.BadArguments;
            }
            Console.WriteLine($"Digest of {day:yyyy-MM-dd}, slot {slot:yyyy-MM-dd HH:mm}Z{(isDryRun ? " (dry run)" : "")}");
            var running = host.Services.GetRequiredService<DigestRunner>().RunSlotAsync(
                slot, instant is null ? day : null, ingestFirst: !result.GetValue(noIngest), isDryRun, Console.WriteLine, stop.Token);
            if (!await ShutdownOptions.StopsInTimeAsync(running, stop.Token, host.Services.GetRequiredService<IOptions<HostOptions>>().Value.ShutdownTimeout,
                host.Services.GetRequiredService<ILoggerFactory>().CreateLogger(typeof(DigestCommand))))
            {
                // The database or the mail server hangs: what is still in flight is the documented window (re-sent after its
                // claim expires), and disposing the host would wait on the same hung calls.
                return Verbs.Interrupted;
            }
            using (host)
            {
                try
                {
                    var summary = await running;
                    Console.WriteLine($"Done in {summary.Elapsed.TotalSeconds:F1} s: {summary.Matched:N0} subscribers matched, {summary.Planned:N0} newly planned, " +
                        $"{summary.Sent:N0} sent, {summary.Failed:N0} failed, {summary.Skipped:N0} skipped, {summary.Waiting:N0} still open");
                    return summary.Sources.Any(source => source.Failed) ? Verbs.SourceFailed : Verbs.Done;
                }
                catch (OperationCanceledException) when (stop.IsStopping)
                {
                    return Verbs.Interrupted;
                }
            }
        });
        return command;
    }
}
