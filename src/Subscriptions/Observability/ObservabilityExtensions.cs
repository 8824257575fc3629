using Microsoft.Extensions.Options;
using Npgsql;
using OpenTelemetry.Metrics;
using OpenTelemetry.Resources;
using OpenTelemetry.Trace;
using Subscriptions.Database;
using Subscriptions.Infrastructure;

namespace Subscriptions.Observability;

internal static class ObservabilityExtensions
{
    /// <summary>The service's instruments (<see cref="ServiceMetrics"/>); every feature that counts something adds this.</summary>
    public static IServiceCollection AddServiceMetrics(this IServiceCollection services) => services.AddFeature("metrics", services =>
    {
        services.AddDatabase().AddMetrics();
        services.AddSingleton<ServiceMetrics>();
    });

    /// <summary>
    /// What <c>serve</c> exports: OpenTelemetry metrics (ASP.NET Core, HttpClient, Npgsql, the runtime, the service's own)
    /// for a Prometheus scrape unless <c>Metrics:Enabled</c> is false, and traces over OTLP when
    /// <c>OTEL_EXPORTER_OTLP_ENDPOINT</c> is set (the exporter reads that and the other standard OTEL_ variables itself).
    /// </summary>
    public static WebApplicationBuilder AddObservability(this WebApplicationBuilder builder)
    {
        builder.Services.AddServiceMetrics();
        builder.Services.AddSection<MetricsOptions>(MetricsOptions.Section).ValidateDataAnnotations();
        var metrics = builder.Configuration.GetSection(MetricsOptions.Section).Get<MetricsOptions>() ?? new MetricsOptions();
        var otlp = !string.IsNullOrWhiteSpace(builder.Configuration["OTEL_EXPORTER_OTLP_ENDPOINT"]);
        if (!metrics.Enabled && !otlp)
        {
            return builder;
        }

        var telemetry = builder.Services.AddOpenTelemetry().ConfigureResource(resource => resource.AddService("subscriptions"));
        if (metrics.Enabled)
        {
            telemetry.WithMetrics(meters => meters
                .AddMeter(ServiceMetrics.MeterName, "Subscriptions.Bounces")
                .AddAspNetCoreInstrumentation()
                .AddHttpClientInstrumentation()
                .AddRuntimeInstrumentation()
                .AddNpgsqlInstrumentation()
                .AddPrometheusExporter());
            if (metrics.Port is { } port)
            {
                var appAddresses = AppAddresses(builder.Configuration).ToList();
                builder.Services.AddSingleton<IValidateOptions<MetricsOptions>>(new MetricsPortOfItsOwn(appAddresses));
                // One more listener, beside the app's own, that serves only /metrics (see MapObservability). Set as `urls`, which
                // Kestrel takes over `http_ports` and `https_ports` (ASPNETCORE_HTTP_PORTS is how the container image names
                // its port): those become addresses too, or the app's own port would be lost.
                builder.WebHost.UseUrls([.. appAddresses, $"http://*:{port}"]);
            }
        }
        if (otlp)
        {
            telemetry.WithTracing(traces => traces
                .AddAspNetCoreInstrumentation()
                .AddHttpClientInstrumentation()
                .AddNpgsql()
                .AddOtlpExporter());
        }
        return builder;
    }

    /// <summary>
    /// <c>Metrics:Port</c> must be a port the app does not serve on: the same port twice failed start-up with an unhandled
    /// "address already in use", and a port the app serves on besides would have answered only <c>/metrics</c> there.
    /// </summary>
    private sealed class MetricsPortOfItsOwn(IReadOnlyList<string> appAddresses) : IValidateOptions<MetricsOptions>
    {
        public ValidateOptionsResult Validate(string? name, MetricsOptions options) =>
            options.Port is { } port && appAddresses.FirstOrDefault(address => PortOf(address) == port) is { } clash
                ? ValidateOptionsResult.Fail($"{MetricsOptions.Section}:{nameof(MetricsOptions.Port)} ({port}) must be a port of its own; the app serves on {clash}")
                : ValidateOptionsResult.Success;

        // An address Kestrel cannot read either is left for Kestrel to refuse, in its own words.
        private static int? PortOf(string address)
        {
            try
            {
                return BindingAddress.Parse(address).Port;
            }
            catch (FormatException)
            {
                return null;
            }
        }
    }

    private static IEnumerable<string> AppAddresses(IConfiguration configuration)
    {
        const StringSplitOptions Entries = StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries;
        return configuration["urls"] is { Length: > 0 } urls
            ? urls.Split(';', Entries)
            : [.. (configuration["http_ports"] ?? "").Split(';', Entries).Select(port => $"http://*:{port}"),
               .. (configuration["https_ports"] ?? "").Split(';', Entries).Select(port => $"https://*:{port}")];
    }

    public static IEndpointRouteBuilder MapObservability(this IEndpointRouteBuilder endpoints)
    {
        // The queue-depth gauge exists once the instruments do, whether or not anything has been counted yet.
        endpoints.ServiceProvider.GetRequiredService<ServiceMetrics>();
        var metrics = endpoints.ServiceProvider.GetRequiredService<IOptions<MetricsOptions>>().Value;
        if (metrics.Enabled)
        {
            endpoints.MapPrometheusScrapingEndpoint("/metrics");
        }
        return endpoints;
    }

    /// <summary>
    /// With <c>Metrics:Port</c>, that port answers only <c>/metrics</c> and the app's own answer everything else: by the
    /// port the connection came in on. (A host filter on the endpoint matched the Host header, which the client writes: the
    /// app's port gave the scrape to anyone who named the metrics port, and the metrics port, plain HTTP on every interface,
    /// served the console and the signups.)
    /// </summary>
    public static WebApplication UseMetricsPort(this WebApplication app)
    {
        var metrics = app.Services.GetRequiredService<Microsoft.Extensions.Options.IOptions<MetricsOptions>>().Value;
        if (metrics.Enabled && metrics.Port is { } port)
        {
            app.Use((context, next) =>
            {
                // By segments: routing takes /metrics/ to the scrape as well.
                if ((context.Connection.LocalPort == port) != context.Request.Path.StartsWithSegments("/metrics", StringComparison.OrdinalIgnoreCase))
                {
                    context.Response.StatusCode = StatusCodes.Status404NotFound;
                    return Task.CompletedTask;
                }
                return next(context);
            });
        }
        return app;
    }
}
