using System.Diagnostics.Metrics;
using Dapper;
using Npgsql;

namespace Subscriptions.Observability;

/// <summary>
/// The service's own instruments, named as operators' dashboards expect them. The features call one method
/// each at the moment something happened; the Prometheus exporter names counters as given (they end in _total).
/// </summary>
internal sealed class ServiceMetrics
{
    public const string MeterName = "Subscriptions";

    private readonly Counter<long> _signups;
    private readonly Counter<long> _confirmations;
    private readonly Counter<long> _unsubscribes;
    private readonly Counter<long> _emailsSent;
    private readonly Counter<long> _emailsFailed;
    private readonly Counter<long> _papersIngested;
    private readonly Histogram<double> _digestRunDuration;
    private readonly NpgsqlDataSource _dataSource;

    public ServiceMetrics(IMeterFactory meters, NpgsqlDataSource dataSource)
    {
        _dataSource = dataSource;
        var meter = meters.Create(MeterName);
        _signups = meter.CreateCounter<long>("subscriptions_signups_total", description: "Valid signups accepted (new or repeated addresses)");
        _confirmations = meter.CreateCounter<long>("subscriptions_confirmations_total", description: "Addresses confirmed by their link");
        _unsubscribes = meter.CreateCounter<long>("subscriptions_unsubscribes_total", description: "Subscribers who unsubscribed");
        _emailsSent = meter.CreateCounter<long>("subscriptions_emails_sent_total", description: "Emails the relay accepted, by kind");
        _emailsFailed = meter.CreateCounter<long>("subscriptions_emails_failed_total", description: "Emails given up on, by kind and reason");
        _papersIngested = meter.CreateCounter<long>("subscriptions_papers_ingested_total", description: "Papers fetched and stored, by source");
        _digestRunDuration = meter.CreateHistogram<double>("subscriptions_digest_run_duration_seconds", unit: "s",
            description: "How long a digest run took (planning for the scheduled run, the whole run for `digest` and the console's Run now)");
        meter.CreateObservableGauge("subscriptions_delivery_queue_depth", QueueDepth, description: "Deliveries planned and not yet sent, failed or skipped");
    }

    public void SignupAccepted() => _signups.Add(1);

    public void Confirmed() => _confirmations.Add(1);

    public void Unsubscribed() => _unsubscribes.Add(1);

    public void EmailSent(string kind) => _emailsSent.Add(1, new KeyValuePair<string, object?>("kind", kind));

    /// <summary><paramref name="reason"/>: <c>refused</c> (a permanent SMTP reply) or <c>attempts</c> (transient failures until the last attempt).</summary>
    public void EmailFailed(string kind, string reason) =>
        _emailsFailed.Add(1, new KeyValuePair<string, object?>("kind", kind), new KeyValuePair<string, object?>("reason", reason));

    public void PapersIngested(string source, int count) => _papersIngested.Add(count, new KeyValuePair<string, object?>("source", source));

    public void DigestRunFinished(TimeSpan elapsed) => _digestRunDuration.Record(elapsed.TotalSeconds);

    // Read at scrape time, synchronously because observable instruments' callbacks are; waited for 2 s in all. Neither the
    // command timeout nor a cancelled token bounds it: a new connection to a hung server waits for the 15 s connect timeout
    // (and a cancelled command for a cancel request sent on one), past Prometheus's 10 s scrape timeout, and every metric was
    // lost for the outage. A count not read by then is left to finish on its own, and the gauge out of that scrape.
    private IEnumerable<Measurement<long>> QueueDepth()
    {
        var counting = CountQueuedAsync();
        try
        {
            if (counting.Wait(TimeSpan.FromSeconds(2)))
            {
                return [new Measurement<long>(counting.Result)];
            }
            counting.ContinueWith(abandoned => abandoned.Exception, TaskContinuationOptions.OnlyOnFaulted); // observed, not rethrown
            return [];
        }
        catch (AggregateException e) when (e.InnerException is NpgsqlException or TimeoutException or InvalidOperationException)
        {
            return [];
        }
    }

    private async Task<long> CountQueuedAsync()
    {
        await using var connection = await _dataSource.OpenConnectionAsync();
        return await connection.ExecuteScalarAsync<long>("SELECT count(*) FROM delivery_queue", commandTimeout: 2);
    }
}
