using Microsoft.Extensions.Options;
using Subscriptions.Infrastructure;

namespace Subscriptions.Digest;

/// <summary>Wakes the delivery worker as soon as a day is planned.</summary>
internal sealed class DeliverySignal : WakeSignal;

/// <summary>On every instance: sends whatever deliveries are due, of any day, then waits for more.</summary>
internal sealed class DeliveryWorker(DeliverySender sender, DeliverySignal signal, IOptions<DigestOptions> options, ILogger<DeliveryWorker> logger)
    : PollingWorker(signal, logger)
{
    protected override TimeSpan PollInterval => options.Value.PollInterval;

    protected override async Task<bool> WorkAsync(CancellationToken stoppingToken)
    {
        var counters = new SendCounters();
        await sender.SendDueAsync(days: null, counters, stoppingToken);
        if (counters.Sent + counters.Failed > 0)
        {
            logger.LogInformation("Deliveries: {Sent} sent, {Failed} failed, {Skipped} skipped, {Retrying} retries scheduled",
                counters.Sent, counters.Failed, counters.Skipped, counters.Retrying);
        }
        return true;
    }
}
