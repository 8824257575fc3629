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

    /// <summary>
    /// Reverse proxies trusted to name the client in X-Forwarded-For: comma-separated IP addresses, or networks in CIDR
    /// notation (an ingress controller's pods change address, within the cluster's pod network).
    /// </summary>
    public string? KnownProxies { get; set; }

    public IReadOnlyList<IPNetwork> KnownProxyNetworks => [.. ProxyEntries().Select(ProxyNetwork).OfType<IPNetwork>()];

    // Joined as text and parsed once: a digest has two dozen links, and resolving each against a freshly parsed base
    // was a visible part of rendering one. The paths joined here are the service's own, never "../" or absolute.
    public Uri Link(string pathAndQuery) => new($"{BaseUrl.TrimEnd('/')}/{pathAndQuery.TrimStart('/')}");

    public IEnumerable<ValidationResult> Validate(ValidationContext validationContext)
    {
        // Links are the base and a path joined as text, and the pages' own links are from the root: a query or fragment
        // swallowed every emailed link's path (all went to the home page), and a path worked in emails only.
        if (Uri.TryCreate(BaseUrl, UriKind.Absolute, out var baseUrl) && (baseUrl.AbsolutePath != "/" || baseUrl.Query != "" || baseUrl.Fragment != ""
            || baseUrl.UserInfo != "" || BaseUrl.TrimEnd('/').Contains('?', StringComparison.Ordinal) || BaseUrl.Contains('#', StringComparison.Ordinal)))
        {
            yield return new ValidationResult(
                $"must be the site's root, e.g. https://papers.example.org, with no path, query, fragment or user; \"{BaseUrl}\" has more", [nameof(BaseUrl)]);
        }
        foreach (var entry in ProxyEntries().Where(entry => ProxyNetwork(entry) is null))
        {
            yield return new ValidationResult(
                $"\"{entry}\" is not an IP address or network; give the proxies' addresses or networks separated by commas, e.g. 10.0.0.5, 10.42.0.0/16 " +
                "(a network by its first address: 10.42.0.0/16, not 10.42.0.1/16)",
                [nameof(KnownProxies)]);
        }
    }

    private string[] ProxyEntries() => (KnownProxies ?? "").Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries);

    /// <summary>An address is the network of itself alone.</summary>
    private static IPNetwork? ProxyNetwork(string entry) =>
        IPAddress.TryParse(entry, out var address) ? new IPNetwork(address, address.GetAddressBytes().Length * 8)
        : IPNetwork.TryParse(entry, out var network) ? network
        : null;
}
