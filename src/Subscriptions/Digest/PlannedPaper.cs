using System.Text.Json;
using Subscriptions.Matching;

namespace Subscriptions.Digest;

/// <summary>One paper of a delivery, as planned: which paper, and which of the subscriber's topics found it.</summary>
internal sealed record PlannedPaper(long PaperId, IReadOnlyList<string> Topics)
{
    private static readonly JsonSerializerOptions SnakeCase = new() { PropertyNamingPolicy = JsonNamingPolicy.SnakeCaseLower };

    public static PlannedPaper From(PaperMatch match) => new(match.PaperId, match.Topics);

    /// <summary>A delivery's papers as its <c>papers</c> column holds them (JSON).</summary>
    public static string Serialize(IEnumerable<PaperMatch> papers) => JsonSerializer.Serialize(papers.Select(From), SnakeCase);

    public static IReadOnlyList<PlannedPaper> Deserialize(string json) => JsonSerializer.Deserialize<List<PlannedPaper>>(json, SnakeCase) ?? [];
}
