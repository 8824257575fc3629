using Microsoft.Extensions.DependencyInjection.Extensions;
using Microsoft.Extensions.Http.Resilience;
using Microsoft.Extensions.Options;
using Polly;
using Subscriptions.Database;
using Subscriptions.Infrastructure;
using Subscriptions.Meaning;
using Subscriptions.Observability;

namespace Subscriptions.Papers;

internal static class PaperExtensions
{
    /// <summary>The sources of each day's list, what is stored of it, and the ingest that joins them.</summary>
    public static IServiceCollection AddPapers(this IServiceCollection services) => services.AddFeature("papers", services =>
    {
        services.AddDatabase().AddMeaning().AddServiceMetrics();
        services.AddSection<PapersOptions>(PapersOptions.Section);
        services.TryAddSingleton(TimeProvider.System);
        services.AddSingleton<PaperStore>();
        services.AddSingleton<PaperIngest>();
        services.AddSingleton<ArxivThrottle>();
        services.AddTransient<ArxivThrottle.Handler>();
        services.AddTransient<WholeBodyHandler>();

        // One client and one standard resilience pipeline per source, so each source has its own circuit breaker. The handlers
        // added after the pipeline run inside it, in each attempt.
        var huggingFace = services.AddHttpClient<HuggingFaceSource>(ConfigureClient);
        huggingFace.AddStandardResilienceHandler().Configure(ConfigureResilience);
        huggingFace.AddHttpMessageHandler<WholeBodyHandler>();
        var arxiv = services.AddHttpClient<ArxivSource>(ConfigureClient);
        arxiv.AddStandardResilienceHandler().Configure(ConfigureResilience);
        arxiv.AddHttpMessageHandler<ArxivThrottle.Handler>(); // every attempt waits its turn
        arxiv.AddHttpMessageHandler<WholeBodyHandler>();
    });

    /// <summary>
    /// Reads each response's whole body within its attempt. HttpClient reads it after the handlers have returned, which is
    /// once the headers are in: outside the resilience pipeline, so a body that stalled was never timed out (the ingest, and
    /// the daily job with it, hung until shutdown) and one that broke off failed the source without a retry
    /// (dotnet/extensions#6071). Read here, within the attempt's timeout, both are retried like a request that hangs.
    /// </summary>
    private sealed class WholeBodyHandler : DelegatingHandler
    {
        protected override async Task<HttpResponseMessage> SendAsync(HttpRequestMessage request, CancellationToken cancellationToken)
        {
            var response = await base.SendAsync(request, cancellationToken);
            try
            {
                // Too large is no passing fault: failed at once, not retried and not counted by the circuit breaker.
                if (response.Content.Headers.ContentLength > MaxBody)
                {
                    throw new SourceFormatException(
                        $"{request.RequestUri} answered {response.Content.Headers.ContentLength:N0} bytes; the largest body taken is {MaxBody:N0}");
                }
                await response.Content.LoadIntoBufferAsync(MaxBody, cancellationToken);
                return response;
            }
            catch
            {
                response.Dispose();
                throw;
            }
        }
    }

    private const int MaxBody = 64 * 1024 * 1024;

    private static void ConfigureClient(IServiceProvider services, HttpClient client)
    {
        client.Timeout = Timeout.InfiniteTimeSpan; // the resilience pipeline times each attempt
        client.MaxResponseContentBufferSize = MaxBody;
        client.DefaultRequestHeaders.UserAgent.ParseAdd("Subscriptions/1.0 (+https://github.com/; daily trending papers digest)");
    }

    private static void ConfigureResilience(HttpStandardResilienceOptions options, IServiceProvider services)
    {
        var http = services.GetRequiredService<IOptions<PapersOptions>>().Value.Http;

        // Retries on 5xx, 408, 429, connection failures and attempt timeouts, waiting as long as Retry-After asks.
        options.Retry.MaxRetryAttempts = Math.Max(http.Retries, 1);
        options.Retry.Delay = http.RetryDelay;
        options.Retry.BackoffType = DelayBackoffType.Exponential;
        options.Retry.UseJitter = true;
        if (http.Retries == 0)
        {
            // The standard handler always has a retry strategy; Papers:Http:Retries=0 turns it off this way.
            options.Retry.ShouldHandle = _ => PredicateResult.False();
        }

        // A daily job makes few calls: three failures in a row within the minute open the circuit.
        options.CircuitBreaker.MinimumThroughput = 3;
        options.CircuitBreaker.FailureRatio = 0.9;
        options.CircuitBreaker.SamplingDuration = Max(TimeSpan.FromMinutes(1), 2 * http.Timeout); // the handler wants at least twice the attempt timeout
        options.CircuitBreaker.BreakDuration = TimeSpan.FromMinutes(1);

        options.AttemptTimeout.Timeout = http.Timeout;
        // The whole request with its retries: every attempt's timeout, and room for the backoff and what Retry-After asks.
        options.TotalRequestTimeout.Timeout = http.Timeout * (http.Retries + 1) + TimeSpan.FromMinutes(5);
    }

    private static TimeSpan Max(TimeSpan a, TimeSpan b) => a > b ? a : b;
}
