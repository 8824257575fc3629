using System.Collections.Specialized;
using System.Text.Json;
using Microsoft.Extensions.Options;
using Quartz;
using Quartz.Spi;
using Subscriptions.Configuration;

namespace Subscriptions.Digest;

/// <summary>
/// The daily trigger: Quartz with its job store in PostgreSQL, clustered, so the trigger survives
/// restarts and exactly one instance fires it. A run missed while every instance was down fires once
/// when one comes back (misfire: fire now), for the day it missed.
/// </summary>
internal static class DigestScheduling
{
    public const string SchedulerName = "Subscriptions";
    private static readonly JobKey Job = new("daily-digest");
    private static readonly TriggerKey Trigger = new("daily-digest");

    public static IServiceCollection AddDigestSchedule(this IServiceCollection services)
    {
        services.AddQuartz(quartz =>
        {
            quartz.SchedulerName = SchedulerName;
            quartz.SchedulerId = "AUTO";
            quartz.UsePersistentStore(store =>
            {
                store.UseProperties = true;
                store.PerformSchemaValidation = true;
                // The connection string is set from ConnectionStrings:Postgres below, once configuration is bound.
                store.UsePostgres(postgres => postgres.ConnectionString = "Host=unset");
                store.UseSerializer<StringMapSerializer>();
                store.UseClustering(cluster =>
                {
                    cluster.CheckinInterval = TimeSpan.FromSeconds(10);
                    cluster.CheckinMisfireThreshold = TimeSpan.FromSeconds(30);
                });
            });
        });
        services.AddOptions<QuartzOptions>().Configure<IOptions<DatabaseOptions>>((quartz, database) =>
            quartz["quartz.dataSource.default.connectionString"] = database.Value.Postgres);
        services.AddQuartzHostedService(options => options.WaitForJobsToComplete = true);
        services.AddHostedService<ScheduleSetup>();
        return services;
    }

    /// <summary>
    /// The day a firing is for: the local date (in <c>Digest:TimeZone</c>) of the latest scheduled time
    /// at or before now, so a run that fires late, after a misfire, still digests the day it missed.
    /// </summary>
    public static DateOnly DayOfFiring(DigestOptions options, DateTimeOffset now)
    {
        var zone = options.TimeZoneInfo;
        var cron = new CronExpression(options.Schedule) { TimeZone = zone };
        DateTimeOffset? latest = null;
        var next = cron.GetNextValidTimeAfter(now - TimeSpan.FromDays(2));
        for (var i = 0; next is { } time && time <= now && i < 100_000; i++)
        {
            latest = time;
            next = cron.GetNextValidTimeAfter(time);
        }
        return DateOnly.FromDateTime(TimeZoneInfo.ConvertTime(latest ?? now, zone).DateTime);
    }

    /// <summary>Creates the job and its trigger, or updates the trigger when Digest:Schedule or Digest:TimeZone changed.</summary>
    private sealed class ScheduleSetup(ISchedulerFactory schedulers, IOptions<DigestOptions> options, ILogger<ScheduleSetup> logger) : IHostedService
    {
        public async Task StartAsync(CancellationToken cancellationToken)
        {
            var scheduler = await schedulers.GetScheduler(cancellationToken);
            var digest = options.Value;
            var job = JobBuilder.Create<DailyDigestJob>().WithIdentity(Job).StoreDurably().Build();
            var trigger = TriggerBuilder.Create()
                .WithIdentity(Trigger)
                .ForJob(Job)
                .WithCronSchedule(digest.Schedule, cron => cron.InTimeZone(digest.TimeZoneInfo).WithMisfireHandlingInstructionFireAndProceed())
                .Build();

            try
            {
                if (!await scheduler.CheckExists(Job, cancellationToken))
                {
                    await scheduler.AddJob(job, replace: true, cancellationToken);
                }
                // An unchanged trigger is left alone: replacing it would forget a missed firing.
                if (await scheduler.GetTrigger(Trigger, cancellationToken) is ICronTrigger existing
                    && existing.CronExpressionString == digest.Schedule && existing.TimeZone.Id == digest.TimeZoneInfo.Id)
                {
                    logger.LogInformation("Daily digest scheduled ({Schedule}, {TimeZone}); next run {Next}",
                        digest.Schedule, digest.TimeZone, existing.GetNextFireTimeUtc());
                    return;
                }
                if (await scheduler.CheckExists(Trigger, cancellationToken))
                {
                    await scheduler.RescheduleJob(Trigger, trigger, cancellationToken);
                }
                else
                {
                    await scheduler.ScheduleJob(trigger, cancellationToken);
                }
            }
            catch (ObjectAlreadyExistsException)
            {
                // Another instance starting at the same moment created it first.
            }
            logger.LogInformation("Daily digest scheduled ({Schedule}, {TimeZone}); next run {Next}",
                digest.Schedule, digest.TimeZone, trigger.GetNextFireTimeUtc());
        }

        public Task StopAsync(CancellationToken cancellationToken) => Task.CompletedTask;
    }

    /// <summary>
    /// Quartz stores a job's data through a serializer; this job has none, so a small System.Text.Json
    /// serializer for string maps is all the store needs (Quartz 3's own default, BinaryFormatter, is gone from .NET).
    /// </summary>
    private sealed class StringMapSerializer : IObjectSerializer
    {
        public void Initialize()
        {
        }

        public byte[] Serialize<T>(T obj) where T : class => obj switch
        {
            NameValueCollection values => JsonSerializer.SerializeToUtf8Bytes(values.AllKeys.ToDictionary(key => key!, key => values[key])),
            IDictionary<string, object?> map when map.Values.All(value => value is null or string) =>
                JsonSerializer.SerializeToUtf8Bytes(map.ToDictionary(entry => entry.Key, entry => (string?)entry.Value)),
            _ => throw new NotSupportedException($"Only string maps can be stored, not {typeof(T).Name}."),
        };

        public T? DeSerialize<T>(byte[] data) where T : class
        {
            var map = JsonSerializer.Deserialize<Dictionary<string, string?>>(data) ?? [];
            if (typeof(T) == typeof(NameValueCollection))
            {
                var values = new NameValueCollection();
                foreach (var (key, value) in map)
                {
                    values[key] = value;
                }
                return values as T;
            }
            return new JobDataMap((IDictionary<string, object>)map.ToDictionary(entry => entry.Key, entry => (object)(entry.Value ?? ""))) as T;
        }
    }
}

/// <summary>Plans the day's digest; every instance's <see cref="DeliveryWorker"/> then sends it.</summary>
[DisallowConcurrentExecution]
internal sealed class DailyDigestJob(DigestRunner runner, DeliverySignal signal, IOptions<DigestOptions> options, TimeProvider time, ILogger<DailyDigestJob> logger) : IJob
{
    public async Task Execute(IJobExecutionContext context)
    {
        var day = DigestScheduling.DayOfFiring(options.Value, time.GetUtcNow());
        logger.LogInformation("Daily digest for {Day} started (scheduled {Scheduled})", day, context.ScheduledFireTimeUtc);
        await runner.PlanDayAsync(day, ingestFirst: true, message => logger.LogInformation("{Progress}", message), context.CancellationToken);
        signal.Wake();
    }
}
