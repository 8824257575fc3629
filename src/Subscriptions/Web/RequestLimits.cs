using System.Threading.RateLimiting;
using Microsoft.AspNetCore.Mvc;
using Microsoft.AspNetCore.RateLimiting;

namespace Subscriptions.Web;

internal static class RequestLimits
{
    /// <summary>What a form or JSON post of this service ever needs (a signup: an address and 20 topics of 200 characters).</summary>
    public const int SmallBody = 16 * 1024;

    /// <summary>Caps the body this endpoint reads at <see cref="SmallBody"/>, however it is sent; over it: 413.</summary>
    public static TBuilder WithSmallBody<TBuilder>(this TBuilder builder) where TBuilder : IEndpointConventionBuilder =>
        builder.WithMetadata(new RequestSizeLimitAttribute(SmallBody));

    /// <summary>
    /// A rate-limit policy counting each client address in a one-minute window; requests for which
    /// <paramref name="applies"/> is false are not counted.
    /// </summary>
    public static RateLimiterOptions AddPerClientPerMinute(
        this RateLimiterOptions options, string policy, Func<HttpContext, int> permitsPerMinute, Func<HttpContext, bool>? applies = null) =>
        options.AddPolicy(policy, context => applies is not null && !applies(context)
            ? RateLimitPartition.GetNoLimiter("not counted")
            : RateLimitPartition.GetFixedWindowLimiter(
                context.Connection.RemoteIpAddress?.ToString() ?? "unknown",
                _ => new FixedWindowRateLimiterOptions { PermitLimit = permitsPerMinute(context), Window = TimeSpan.FromMinutes(1), QueueLimit = 0 }));
}
