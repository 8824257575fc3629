using System.Globalization;
using System.Threading.RateLimiting;
using Microsoft.AspNetCore.Http.Features;
using Microsoft.AspNetCore.Server.Kestrel.Core;

namespace Subscriptions.Web;

/// <summary>What every request gets: body limits, problem answers instead of 500s, rate-limit answers, security headers.</summary>
internal static class WebExtensions
{
    /// <summary>The largest body any endpoint takes; each endpoint may take less (<see cref="RequestLimits.SmallBody"/>).</summary>
    public const int MaxBodyBytes = 64 * 1024;
    public const int MaxFormFields = 64;
    public const int MaxFormKeyLength = 256;

    /// <summary>Serves on http://localhost:8080 unless <c>urls</c> (or <c>ASPNETCORE_URLS</c>, <c>http_ports</c>, <c>https_ports</c>) says otherwise.</summary>
    public static WebApplicationBuilder WithDefaultUrl(this WebApplicationBuilder builder)
    {
        if (new[] { "urls", "http_ports", "https_ports" }.All(key => string.IsNullOrEmpty(builder.Configuration[key])))
        {
            builder.WebHost.UseUrls("http://localhost:8080");
        }
        return builder;
    }

    public static IServiceCollection AddWeb(this IServiceCollection services)
    {
        services.Configure<KestrelServerOptions>(kestrel =>
        {
            kestrel.AddServerHeader = false;
            // Enforced on the bytes read, chunked bodies included; a slow body is cut off by Kestrel's
            // minimum data rate (240 bytes/s after 5 s) and answered 408.
            kestrel.Limits.MaxRequestBodySize = MaxBodyBytes;
        });
        services.Configure<FormOptions>(form =>
        {
            form.ValueCountLimit = MaxFormFields;
            form.KeyLengthLimit = MaxFormKeyLength;
            form.ValueLengthLimit = MaxBodyBytes;
            form.MultipartBodyLengthLimit = MaxBodyBytes;
            form.MultipartHeadersLengthLimit = 4 * 1024;
        });
        // Every page is a Razor component rendered on the server (RazorComponentResult); none is interactive.
        services.AddRazorComponents();
        services.AddProblemDetails();
        services.AddExceptionHandler<RequestProblems>();
        // Public pages that cost a query over all their history (the archive's index of days) are kept a minute. Each page
        // is small; the cap keeps the cache far from the process's memory budget.
        services.AddOutputCache(options => options.SizeLimit = 4 * 1024 * 1024);
        services.AddRateLimiter(options =>
        {
            options.RejectionStatusCode = StatusCodes.Status429TooManyRequests;
            options.OnRejected = (context, cancellationToken) =>
            {
                var retryAfter = context.Lease.TryGetMetadata(MetadataName.RetryAfter, out var wait) ? wait : TimeSpan.FromMinutes(1);
                var seconds = Math.Max(1, (int)Math.Ceiling(retryAfter.TotalSeconds));
                context.HttpContext.Response.Headers.RetryAfter = seconds.ToString(CultureInfo.InvariantCulture);
                return new ValueTask(RequestProblems.AnswerAsync(context.HttpContext, StatusCodes.Status429TooManyRequests,
                    "Too many requests from this address", $"Try again in {seconds} seconds."));
            };
        });
        return services;
    }

    public static WebApplication UseWeb(this WebApplication app)
    {
        // Before anything reads the client's address: behind known proxies it is the forwarded one (App:KnownProxies).
        // With ASPNETCORE_FORWARDEDHEADERS_ENABLED=true ASP.NET Core has put the middleware first itself; a second one would
        // take one more entry of X-Forwarded-For, the one the client wrote, as the client.
        // (Read as ASP.NET Core reads it: "true" in any case turns it on, anything else leaves it off.)
        if (!string.Equals(app.Configuration["FORWARDEDHEADERS_ENABLED"], "true", StringComparison.OrdinalIgnoreCase))
        {
            app.UseForwardedHeaders();
        }
        app.UseSecurityHeaders();
        app.UseExceptionHandler();
        app.UseStatusCodePages();
        app.UseRateLimiter();
        app.UseOutputCache();
        return app;
    }
}
