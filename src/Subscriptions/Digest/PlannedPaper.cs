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
    public static PlannedPaper From(PaperMatch match) => new(match.PaperId, match.Topics, match.CloseTo);

    /// <summary>A delivery's papers as its <c>papers</c> column holds them (JSON).</summary>
    public static string Serialize(IEnumerable<PaperMatch> papers, Func<PaperMatch, DateOnly> day) =>
        JsonSerializer.Serialize([.. papers.Select(paper => new PlannedPaper(paper.PaperId, paper.Topics, paper.CloseTo, day(paper)))],
            PlannedPaperJson.Default.ListPlannedPaper);

    public static IReadOnlyList<PlannedPaper> Deserialize(string json) => JsonSerializer.Deserialize(json, PlannedPaperJson.Default.ListPlannedPaper) ?? [];
}

/// <summary>
/// The <c>papers</c> column's JSON, written by code generated at build time: planning serializes a list per subscriber, and
/// reflection-based serialization cost ~11 µs a list (10.9 s of a 1,000,000-subscriber slot's 40.6 s).
/// </summary>
[JsonSourceGenerationOptions(PropertyNamingPolicy = JsonKnownNamingPolicy.SnakeCaseLower)]
[JsonSerializable(typeof(List<PlannedPaper>))]
internal sealed partial class PlannedPaperJson : JsonSerializerContext;
