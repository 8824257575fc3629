using System.Text.Json;
using System.Text.Json.Serialization;
using Subscriptions.Matching;

namespace Subscriptions.Digest;

/// <summary>
/// One paper of a delivery, as planned: which paper, which of the subscriber's topics it mentions, which it is only
/// close to in meaning (absent from deliveries planned before meaning existed), and the day it is shown from (its
/// trending signal that day; deliveries planned before slots have no day: the delivery's own).
/// </summary>
internal sealed record PlannedPaper(
    long PaperId, IReadOnlyList<string> Topics, IReadOnlyList<string>? CloseTo = null,
    [property: JsonIgnore(Condition = JsonIgnoreCondition.WhenWritingNull)] DateOnly? Day = null)
{
    private static readonly JsonSerializerOptions SnakeCase = new() { PropertyNamingPolicy = JsonNamingPolicy.SnakeCaseLower };

    public static PlannedPaper From(PaperMatch match) => new(match.PaperId, match.Topics, match.CloseTo);

    /// <summary>A delivery's papers as its <c>papers</c> column holds them (JSON).</summary>
    public static string Serialize(IEnumerable<PaperMatch> papers, Func<PaperMatch, DateOnly> day) =>
        JsonSerializer.Serialize(papers.Select(paper => new PlannedPaper(paper.PaperId, paper.Topics, paper.CloseTo, day(paper))), SnakeCase);

    public static IReadOnlyList<PlannedPaper> Deserialize(string json) => JsonSerializer.Deserialize<List<PlannedPaper>>(json, SnakeCase) ?? [];
}
