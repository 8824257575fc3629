using System.ComponentModel.DataAnnotations;
using Subscriptions.Infrastructure;

namespace Subscriptions.Subscribers;

internal sealed class AppOptions
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
    [Range(1, 100_000, ErrorMessage = "must be between {1} and {2}")]
    public int SignupsPerMinute { get; set; } = 10;

    public Uri Link(string pathAndQuery) => new(new Uri(BaseUrl.TrimEnd('/') + "/"), pathAndQuery.TrimStart('/'));
}
