using System.ComponentModel.DataAnnotations;
using System.Net;
using Subscriptions.Infrastructure;

namespace Subscriptions.Subscribers;

internal sealed class AppOptions : IValidatableObject
{
    public const string Section = "App";

    /// <summary>Public address of the service, used for every link inside emails.</summary>
    [Required(ErrorMessage = "is required"), HttpUrl]
    public string BaseUrl { get; set; } = "http://localhost:8080";

    /// <summary>Signs the links in emails; changing it invalidates every link already sent.</summary>
    [Required(AllowEmptyStrings = false, ErrorMessage = "is required: a random secret of at least 32 characters that signs the links in emails (e.g. `openssl rand -base64 32`)")]
    [MinLength(32, ErrorMessage = "must be at least 32 characters long")]
    public string TokenSecret { get; set; } = "";

    /// <summary>Signups accepted per client address per minute.</summary>
    [Range(1, 10_000_000, ErrorMessage = "must be between {1} and {2}")]
    public int SignupsPerMinute { get; set; } = 10;

    /// <summary>Reverse proxies (comma-separated IP addresses) trusted to name the client in X-Forwarded-For.</summary>
    public string? KnownProxies { get; set; }

    public IReadOnlyList<IPAddress> KnownProxyAddresses =>
        [.. ProxyEntries().Select(entry => IPAddress.TryParse(entry, out var address) ? address : null).OfType<IPAddress>()];

    // Joined as text and parsed once: a digest has two dozen links, and resolving each against a freshly parsed base
    // was a visible part of rendering one. The paths joined here are the service's own, never "../" or absolute.
    public Uri Link(string pathAndQuery) => new($"{BaseUrl.TrimEnd('/')}/{pathAndQuery.TrimStart('/')}");

    public IEnumerable<ValidationResult> Validate(ValidationContext validationContext)
    {
        foreach (var entry in ProxyEntries().Where(entry => !IPAddress.TryParse(entry, out _)))
        {
            yield return new ValidationResult($"\"{entry}\" is not an IP address; give the proxies' addresses separated by commas, e.g. 10.0.0.5, 10.0.0.6", [nameof(KnownProxies)]);
        }
    }

    private string[] ProxyEntries() => (KnownProxies ?? "").Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries);
}
