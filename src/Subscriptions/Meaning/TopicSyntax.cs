using System.Text.RegularExpressions;

namespace Subscriptions.Meaning;

/// <summary>
/// A topic as typed: <c>author:"Yann LeCun"</c> and <c>category:cs.CV</c> filters (each must hold) around
/// words in PostgreSQL's websearch syntax ("phrases", OR, -exclusion), e.g. <c>category:cs.CV depth</c>.
/// </summary>
internal sealed partial record TopicSyntax(string Words, IReadOnlyList<string> Authors, IReadOnlyList<string> Categories)
{
    public bool HasFilters => Authors.Count > 0 || Categories.Count > 0;

    /// <summary>The words' exclusions (<c>-medical</c>, <c>-"medical imaging"</c>) as one query of any of them ("" when none).</summary>
    public string Exclusions => string.Join(" OR ", Excluded().Matches(Words).Select(match => match.Value.TrimStart()[1..]));

    public static TopicSyntax Parse(string topic)
    {
        var authors = new List<string>();
        var categories = new List<string>();
        var words = Filter().Replace(topic, match =>
        {
            var value = match.Groups["quoted"].Success ? match.Groups["quoted"].Value : match.Groups["bare"].Value;
            value = value.Trim();
            if (value.Length > 0)
            {
                (match.Groups["key"].Value.Equals("author", StringComparison.OrdinalIgnoreCase) ? authors : categories).Add(value);
            }
            return " ";
        });
        return new TopicSyntax(Spaces().Replace(words, " ").Trim(), authors, categories);
    }

    /// <summary>What the model reads of a topic: its words without filters, exclusions, quotes or OR ("" when only filters are left).</summary>
    public static string MeaningOf(string topic)
    {
        var words = Parse(topic).Words;
        words = Excluded().Replace(words, " ");
        words = words.Replace("\"", " ", StringComparison.Ordinal);
        words = OrWord().Replace(words, " ");
        return Spaces().Replace(words, " ").Trim();
    }

    [GeneratedRegex("""(?<key>author|category):(?:"(?<quoted>[^"]*)"?|(?<bare>[^\s"]+))""", RegexOptions.IgnoreCase)]
    private static partial Regex Filter();

    [GeneratedRegex(@"(?:^|\s)-(?:""[^""]*""?|\S+)")]
    private static partial Regex Excluded();

    [GeneratedRegex(@"\bOR\b")]
    private static partial Regex OrWord();

    [GeneratedRegex(@"\s+")]
    private static partial Regex Spaces();
}
