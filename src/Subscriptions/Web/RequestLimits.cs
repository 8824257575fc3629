using Microsoft.AspNetCore.Mvc;

namespace Subscriptions.Web;

internal static class RequestLimits
{
    /// <summary>What a form or JSON post of this service ever needs (a signup: an address and 20 topics of 200 characters).</summary>
    public const int SmallBody = 16 * 1024;

    /// <summary>Caps the body this endpoint reads at <see cref="SmallBody"/>, however it is sent; over it: 413.</summary>
    public static TBuilder WithSmallBody<TBuilder>(this TBuilder builder) where TBuilder : IEndpointConventionBuilder =>
        builder.WithMetadata(new RequestSizeLimitAttribute(SmallBody));
}
