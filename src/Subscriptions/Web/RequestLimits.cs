using System.Net;
using System.Net.Sockets;
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
    /// A rate-limit policy counting each client in a one-minute window; requests for which <paramref name="applies"/> is
    /// false are not counted.
    /// </summary>
    public static RateLimiterOptions AddPerClientPerMinute(
        this RateLimiterOptions options, string policy, Func<HttpContext, int> permitsPerMinute, Func<HttpContext, bool>? applies = null) =>
        options.AddPolicy(policy, context => applies is not null && !applies(context)
            ? RateLimitPartition.GetNoLimiter("not counted")
            : RateLimitPartition.GetFixedWindowLimiter(
                ClientOf(context.Connection.RemoteIpAddress),
                _ => new FixedWindowRateLimiterOptions { PermitLimit = permitsPerMinute(context), Window = TimeSpan.FromMinutes(1), QueueLimit = 0 }));

    /// <summary>
    /// The client a limit counts: an IPv4 address, or an IPv6 address's /64. A single host or VPS is given a whole /64 and
    /// can pick a new address in it for every request; counted by address, it would never reach a limit.
    /// </summary>
    public static string ClientOf(IPAddress? address)
    {
        if (address is null)
        {
            return "unknown";
        }
        if (address.IsIPv4MappedToIPv6)
        {
            return address.MapToIPv4().ToString();
        }
        if (address.AddressFamily != AddressFamily.InterNetworkV6)
        {
            return address.ToString();
        }
        Span<byte> bytes = stackalloc byte[16];
        address.TryWriteBytes(bytes, out _);
        bytes[8..].Clear();
        return $"{new IPAddress(bytes)}/64";
    }
}
