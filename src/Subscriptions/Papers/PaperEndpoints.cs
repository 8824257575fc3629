using System.Globalization;
using Microsoft.Extensions.DependencyInjection.Extensions;
using Microsoft.Extensions.Http.Resilience;
using Microsoft.Extensions.Options;
using Polly;
using Subscriptions.Configuration;

namespace Subscriptions.Papers;

internal static class PaperEndpoints
{
    public static IServiceCollection AddPapers(this IServiceCollection services)
    {
        services.AddSection<PapersOptions>(PapersOptions.Section);
        services.TryAddSingleton(TimeProvider.System);
        services.AddSingleton<PaperStore>();
        services.AddSingleton<PaperIngest>();
        services.AddSingleton<ArxivThrottle>();
        services.AddTransient<ArxivThrottle.Handler>();

        // One client and one resilience pipeline per source, so each source has its own circuit breaker.
        services.AddHttpClient<HuggingFaceSource>(ConfigureClient)
            .AddResilienceHandler(HuggingFaceSource.SourceName, ConfigureResilience);
        var arxiv = services.AddHttpClient<ArxivSource>(ConfigureClient);
        arxiv.AddResilienceHandler(ArxivSource.SourceName, ConfigureResilience);
        arxiv.AddHttpMessageHandler<ArxivThrottle.Handler>(); // added after, so inside the retries: every attempt waits its turn
        return services;
    }

    public static IEndpointRouteBuilder MapPapers(this IEndpointRouteBuilder endpoints)
    {
        endpoints.MapGet("/api/papers", GetPapersAsync);
        return endpoints;
    }

    private static async Task<IResult> GetPapersAsync(string? date, PaperStore store, CancellationToken cancellationToken)
    {
        if (!DateOnly.TryParseExact(date, "yyyy-MM-dd", CultureInfo.InvariantCulture, DateTimeStyles.None, out var day))
        {
            return TypedResults.ValidationProblem(
                new Dictionary<string, string[]> { ["date"] = ["must be a day as YYYY-MM-DD, e.g. ?date=2026-11-25"] },
                title: "Which day's papers?");
        }
        var papers = await store.PapersOfDayAsync(day, cancellationToken);
        return TypedResults.Ok(new { date = day.ToString("yyyy-MM-dd", CultureInfo.InvariantCulture), count = papers.Count, papers });
    }

    private static void ConfigureClient(IServiceProvider services, HttpClient client)
    {
        client.Timeout = Timeout.InfiniteTimeSpan; // the resilience pipeline times each attempt
        client.MaxResponseContentBufferSize = 64 * 1024 * 1024;
        client.DefaultRequestHeaders.UserAgent.ParseAdd("Subscriptions/1.0 (+https://github.com/; daily trending papers digest)");
    }

    private static void ConfigureResilience(ResiliencePipelineBuilder<HttpResponseMessage> builder, ResilienceHandlerContext context)
    {
        var http = context.ServiceProvider.GetRequiredService<IOptions<PapersOptions>>().Value.Http;
        if (http.Retries > 0)
        {
            builder.AddRetry(new HttpRetryStrategyOptions
            {
                // Handles 5xx, 408, 429, connection failures and attempt timeouts; waits as long as Retry-After asks.
                MaxRetryAttempts = http.Retries,
                Delay = http.RetryDelay,
                BackoffType = DelayBackoffType.Exponential,
                UseJitter = true,
                ShouldRetryAfterHeader = true,
            });
        }
        builder.AddCircuitBreaker(new HttpCircuitBreakerStrategyOptions
        {
            // A daily job makes few calls: three failures in a row within the minute open the circuit.
            MinimumThroughput = 3,
            FailureRatio = 0.9,
            SamplingDuration = TimeSpan.FromMinutes(1),
            BreakDuration = TimeSpan.FromMinutes(1),
        });
        builder.AddTimeout(http.Timeout);
    }
}
