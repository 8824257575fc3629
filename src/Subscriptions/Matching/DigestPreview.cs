using System.Globalization;
using Microsoft.Extensions.Options;
using Subscriptions.Papers;

namespace Subscriptions.Matching;

// Public, as the Razor components that show them are (a .razor component is always a public class).
public sealed record PreviewPaper(long Id, string? ArxivId, string Title, string? PageUrl, int? Upvotes, double Score, IReadOnlyList<string> MatchedTopics, IReadOnlyList<string> CloseTo);

/// <summary>What someone with these topics would get on <see cref="Day"/> (null when no papers were ever ingested).</summary>
public sealed record Preview(DateOnly? Day, IReadOnlyList<string> Topics, int MaxPapers, IReadOnlyList<PreviewPaper> Papers);

/// <summary>The preview behind <c>/api/preview</c>, the signup page and the preferences page: the same matching the digest uses.</summary>
internal sealed class DigestPreview(TopicMatcher matcher, PaperStore papers, TopicRules topicRules, IOptions<MatchingOptions> options)
{
    /// <summary><c>Digest:MaxPapers</c>: the cap for a subscriber who has not chosen one.</summary>
    public int DefaultMaxPapers => options.Value.MaxPapers;

    public async Task<(Preview? Preview, Dictionary<string, string[]> Errors)> BuildAsync(
        IReadOnlyList<string>? topics, string? date, int? maxPapers, CancellationToken cancellationToken)
    {
        var errors = new Dictionary<string, string[]>();
        DateOnly? day = null;
        if (!string.IsNullOrEmpty(date))
        {
            if (DateOnly.TryParseExact(date, "yyyy-MM-dd", CultureInfo.InvariantCulture, DateTimeStyles.None, out var parsed))
            {
                day = parsed;
            }
            else
            {
                errors["date"] = ["must be a day as YYYY-MM-DD"];
            }
        }
        var cleanTopics = await topicRules.ValidateAsync(topics, errors, cancellationToken);
        if (errors.Count > 0)
        {
            return (null, errors);
        }

        var cap = maxPapers ?? DefaultMaxPapers;
        day ??= await papers.LatestDayAsync(cancellationToken);
        if (day is not { } chosen)
        {
            return (new Preview(null, cleanTopics, cap, []), errors);
        }
        var matches = await matcher.MatchAsync(chosen, cleanTopics, cap, cancellationToken);
        var details = (await papers.PapersOfDayAsync(chosen, cancellationToken)).ToDictionary(paper => paper.Id);
        // Read after the match: a fetch in between may have taken a paper off the day's list (it is then left out, not a 500).
        var list = matches
            .Where(match => details.ContainsKey(match.PaperId))
            .Select(match => (match, paper: details[match.PaperId]))
            .Select(pair => new PreviewPaper(pair.paper.Id, pair.paper.ArxivId, pair.paper.Title, pair.paper.PageUrl, pair.paper.Upvotes,
                Math.Round(pair.match.Score, 4), pair.match.Topics, pair.match.CloseTo))
            .ToList();
        return (new Preview(chosen, cleanTopics, cap, list), errors);
    }
}
