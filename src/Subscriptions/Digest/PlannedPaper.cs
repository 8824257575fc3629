using System.Text.Json;
using Subscriptions.Matching;

namespace Subscriptions.Digest;

/// <summary>
/// One paper of a delivery, as planned: which paper, which of the subscriber's topics it mentions, and which it is only
/// close to in meaning (absent from deliveries planned before meaning existed).
/// </summary>
internal sealed record PlannedPaper(long PaperId, IReadOnlyList<string> Topics, IReadOnlyList<string>? CloseTo = null)
{
    private static readonly JsonSerializerOptions SnakeCase = new() { PropertyNamingPolicy = JsonNamingPolicy.SnakeCaseLower };

    public static PlannedPaper From(PaperMatch match) => new(match.PaperId, match.Topics, match.CloseTo);

    /// <summary>A delivery's papers as its <c>papers</c> column holds them (JSON).</summary>
    public static string Serialize(IEnumerable<PaperMatch> papers) => JsonSerializer.Serialize(papers.Select(From), SnakeCase);

    public static IReadOnlyList<PlannedPaper> Deserialize(string json) => JsonSerializer.Deserialize<List<PlannedPaper>>(json, SnakeCase) ?? [];
}
