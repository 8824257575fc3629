using Microsoft.Extensions.Options;
using Npgsql;
using Quartz;

namespace Subscriptions.Digest;

/// <summary>
/// The hourly trigger: Quartz with its job store in PostgreSQL, clustered, so the trigger survives
/// restarts and exactly one instance fires each slot. Slots missed while every instance was down fire
/// once when one comes back (misfire: fire now), and that firing plans each slot it missed.
/// </summary>
internal static class DigestSchedule
{
    public const string SchedulerName = "Subscriptions";
    private static readonly JobKey Job = new("daily-digest");
    private static readonly TriggerKey Trigger = new("daily-digest");

    /// <summary>Every whole hour, in UTC: every time zone's whole hours are UTC's (the rest fall in the slot after them).</summary>
    public const string SlotCron = "0 0 * * * ?";

    public static IServiceCollection AddDigestSchedule(this IServiceCollection services)
    {
        services.AddQuartz(quartz =>
        {
            quartz.ConfigureScheduler(scheduler =>
            {
                scheduler.InstanceName = SchedulerName;
                scheduler.GenerateInstanceId = true;
                // A firing still planning at shutdown is asked to stop (its batches so far are committed; planning again adds
                // nothing), and handed back for another instance to run now (RecoverFiringsCancelledByShutdown, below),
                // rather than run on until the process exits and then wait for the next hour.
                scheduler.ShutdownJobInterruption = ShutdownJobInterruption.WhenWaitingForJobs;
            });
            quartz.UsePersistentStore(store =>
            {
                // Job data as strings, stored with Quartz's own System.Text.Json serializer; the tables of
                // sql/0005 and 0006 are validated at start-up (Quartz's default).
                store.ConfigureStore(options =>
                {
                    options.StoreJobDataAsStrings = true;
                    options.RecoverFiringsCancelledByShutdown = true;
                    // Its misfire handler and cluster manager are threads of their own, foreground by default: with the
                    // database gone or hung, Quartz's shutdown outlasted the bound on stopping (ShutdownOptions.RunBoundedAsync),
                    // and they kept the process alive, checking in, after Main had returned.
                    options.UseBackgroundThreads = true;
                });
                store.UseSystemTextJsonSerializer();
                // The app's one data source: one pool, and Npgsql logging through the host.
                store.UsePostgres(postgres => postgres.DataSourceFactory = provider => provider.GetRequiredService<NpgsqlDataSource>());
                store.UseClustering(cluster =>
                {
                    cluster.CheckinInterval = TimeSpan.FromSeconds(10);
                    cluster.CheckinMisfireThreshold = TimeSpan.FromSeconds(30);
                });
            });
        });
        services.AddQuartzHostedService(options => options.WaitForJobsToComplete = true);
        services.AddHostedService<ScheduleSetup>();
        return services;
    }

    /// <summary>
    /// The day of the latest default slot at or before now: today in <c>Digest:TimeZone</c> once the hour of
    /// <c>Digest:Schedule</c> has come, yesterday before. Slots are hourly and daily, so the schedule's minutes and
    /// day fields do not count here either.
    /// </summary>
    public static DateOnly DayOfFiring(DigestOptions options, DateTimeOffset now)
    {
        var today = LocalDate(options, now);
        return DefaultSlot(options, today) <= now ? today : today.AddDays(-1);
    }

    /// <summary>The date of an instant in <c>Digest:TimeZone</c>.</summary>
    public static DateOnly LocalDate(DigestOptions options, DateTimeOffset instant) =>
        DateOnly.FromDateTime(TimeZoneInfo.ConvertTime(instant, options.TimeZoneInfo).DateTime);

    /// <summary>The slot of the operator's default delivery time on a day: the hour of <c>Digest:Schedule</c> in <c>Digest:TimeZone</c>.</summary>
    public static DateTimeOffset DefaultSlot(DigestOptions options, DateOnly day) =>
        DeliverySlots.SlotDue(DeliverySlots.Moment(day, options.DefaultHour, options.TimeZoneInfo));

    /// <summary>Creates the job and its hourly trigger, or replaces the daily trigger of earlier versions.</summary>
    private sealed class ScheduleSetup(ISchedulerFactory schedulers, IOptions<DigestOptions> options, ILogger<ScheduleSetup> logger) : IHostedService
    {
        public async Task StartAsync(CancellationToken cancellationToken)
        {
            var scheduler = await schedulers.GetScheduler(cancellationToken);
            var digest = options.Value;
            // Recovered: a firing whose instance died (or was stopped) while planning is run again at once by another, not
            // left for the next hour's catch-up.
            var job = JobBuilder.Create<DailyDigestJob>().WithIdentity(Job).StoreDurably().RequestRecovery().Build();
            var trigger = TriggerBuilder.Create()
                .WithIdentity(Trigger)
                .ForJob(Job)
                .WithCronSchedule(SlotCron, cron => cron
                    .InTimeZone(TimeZoneInfo.Utc)
                    .WithMisfireInstruction(CronTriggerMisfireInstruction.FireAndProceed))
                .Build();

            var next = trigger.GetFireTimeAfter(DateTimeOffset.UtcNow);
            try
            {
                // Also the job stored by an earlier version, which did not ask for recovery.
                if (await scheduler.GetJobDetail(Job, cancellationToken) is not { RequestsRecovery: true })
                {
                    await scheduler.AddJob(job, AddJobOptions.Replacing, cancellationToken);
                }
                // An unchanged trigger is left alone: replacing it would forget a missed firing.
                if (await scheduler.GetTrigger(Trigger, cancellationToken) is ICronTrigger existing
                    && existing.CronExpressionString == SlotCron && existing.TimeZone.Id == TimeZoneInfo.Utc.Id)
                {
                    next = existing.NextFireTimeUtc;
                }
                else if (await scheduler.Exists(Trigger, cancellationToken))
                {
                    next = await scheduler.RescheduleJob(Trigger, trigger, cancellationToken);
                }
                else
                {
                    next = await scheduler.ScheduleJob(trigger, cancellationToken: cancellationToken);
                }
            }
            catch (ObjectAlreadyExistsException)
            {
                // Another instance starting at the same moment created it first.
            }
            logger.LogInformation("Digest slots scheduled hourly; default delivery time {Hour}:00 {TimeZone}; next slot {Next}",
                digest.DefaultHour, digest.TimeZone, next);
        }

        public Task StopAsync(CancellationToken cancellationToken) => Task.CompletedTask;
    }
}
