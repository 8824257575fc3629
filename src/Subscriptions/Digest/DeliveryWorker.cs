using Microsoft.Extensions.Options;
using Subscriptions.Configuration;

namespace Subscriptions.Digest;

/// <summary>Wakes the delivery worker as soon as a day is planned.</summary>
internal sealed class DeliverySignal : WakeSignal;

/// <summary>On every instance: sends whatever deliveries are due, of any day, then waits for more.</summary>
internal sealed class DeliveryWorker(DeliverySender sender, DeliverySignal signal, IOptions<DigestOptions> options, ILogger<DeliveryWorker> logger)
    : BackgroundService
{
    protected override async Task ExecuteAsync(CancellationToken stoppingToken)
    {
        while (!stoppingToken.IsCancellationRequested)
        {
            var counters = new SendCounters();
            try
            {
                await sender.SendDueAsync(day: null, counters, stoppingToken);
                if (counters.Sent + counters.Failed > 0)
                {
                    logger.LogInformation("Deliveries: {Sent} sent, {Failed} failed, {Skipped} skipped, {Retrying} retries scheduled",
                        counters.Sent, counters.Failed, counters.Skipped, counters.Retrying);
                }
                await signal.WaitAsync(options.Value.PollInterval, stoppingToken);
            }
            catch (OperationCanceledException) when (stoppingToken.IsCancellationRequested)
            {
                return;
            }
            catch (Exception e)
            {
                logger.LogError(e, "Delivery worker failed; trying again in {Interval}", options.Value.PollInterval);
                try
                {
                    await Task.Delay(options.Value.PollInterval, stoppingToken);
                }
                catch (OperationCanceledException)
                {
                    return;
                }
            }
        }
    }
}
