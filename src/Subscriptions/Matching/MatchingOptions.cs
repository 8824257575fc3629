using System.ComponentModel.DataAnnotations;

namespace Subscriptions.Matching;

/// <summary>
/// <c>Digest:MaxPapers</c>, the default cap of papers per email. It is a digest setting to the operator,
/// but previews, preferences and the digest all apply it through matching, so matching owns it.
/// </summary>
internal sealed class MatchingOptions
{
    public const string Section = "Digest";

    [Range(1, 50, ErrorMessage = "must be between {1} and {2}")]
    public int MaxPapers { get; set; } = 10;
}

/// <summary><c>App:PreviewsPerMinute</c>: each preview runs the full-text search, so a client gets this many a minute.</summary>
internal sealed class PreviewOptions
{
    public const string Section = "App";

    [Range(1, 10_000_000, ErrorMessage = "must be between {1} and {2}")]
    public int PreviewsPerMinute { get; set; } = 60;
}
