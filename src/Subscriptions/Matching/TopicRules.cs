using Dapper;
using Microsoft.Extensions.Primitives;
using Npgsql;
using Subscriptions.Infrastructure;
using Subscriptions.Meaning;

namespace Subscriptions.Matching;

/// <summary>What a topic may be, for signups, preferences and previews alike: 1 to 20 distinct, searchable topics.</summary>
internal sealed class TopicRules(NpgsqlDataSource dataSource)
{
    public const int MaxTopics = 20;
    public const int MaxTopicLength = 200;

    /// <summary>The page's textarea holds one topic per line; a client may also repeat the field.</summary>
    public static List<string> Lines(StringValues values) =>
        [.. values.SelectMany(value => (value ?? "").Split('\n')).Select(line => line.TrimEnd('\r'))];

    /// <summary>The cleaned-up topics; what is wrong with them is added to <paramref name="errors"/>, keyed <c>topics</c> or <c>topics[i]</c>.</summary>
    public async Task<List<string>> ValidateAsync(
        IReadOnlyList<string>? topics, Dictionary<string, string[]> errors, CancellationToken cancellationToken)
    {
        // Blank lines and repeats (ignoring case) are dropped; positions in errors refer to what remains.
        var clean = (topics ?? [])
            .Select(topic => topic?.Trim() ?? "") // a JSON array may hold nulls: blank, like an empty line
            .Where(topic => topic.Length > 0)
            .Distinct(StringComparer.OrdinalIgnoreCase)
            .ToList();

        if (clean.Count == 0)
        {
            errors["topics"] = ["at least one topic is required"];
            return clean;
        }
        if (clean.Count > MaxTopics)
        {
            errors["topics"] = [$"at most {MaxTopics} topics are allowed; there are {clean.Count}"];
            return clean;
        }

        var checkable = new List<string>();
        for (var i = 0; i < clean.Count; i++)
        {
            if (clean[i].Length > MaxTopicLength)
            {
                errors[$"topics[{i}]"] = [$"must be at most {MaxTopicLength} characters"];
            }
            else if (clean[i].Any(char.IsControl))
            {
                errors[$"topics[{i}]"] = ["must not contain control characters"];
            }
            else if (!XmlChars.IsValid(clean[i]))
            {
                // U+FFFE, U+FFFF, half a surrogate pair: stored, such a topic made every feed that named it answer 500.
                errors[$"topics[{i}]"] = ["contains characters that are not valid text"];
            }
            else
            {
                checkable.Add(clean[i]);
            }
        }

        foreach (var topic in await FindUnsearchableAsync(checkable, cancellationToken))
        {
            errors[$"topics[{clean.IndexOf(topic)}]"] =
                [$"\"{topic}\" has no word to search for: it holds only common words (like \"the\" or \"of\"), punctuation or excluded terms"];
        }
        return clean;
    }

    /// <summary>
    /// The topics whose query holds no term: the same <c>topic_query</c> that matching uses, so a topic
    /// passes here exactly when it can match a paper.
    /// </summary>
    private async Task<IReadOnlyList<string>> FindUnsearchableAsync(List<string> topics, CancellationToken cancellationToken)
    {
        if (topics.Count == 0)
        {
            return [];
        }
        // querytree() is 'T' when nothing is left to search and '' when the query is empty.
        // A topic of only author: or category: filters searches no words and is fine; the rest must have words.
        var wordsOnly = topics.Select(TopicSyntax.Parse).ToList();
        const string sql = """
            SELECT topic FROM unnest(@topics, @words) AS t(topic, words)
            WHERE words IS NOT NULL AND querytree(topic_query(words)) IN ('', 'T')
            """;
        await using var connection = await dataSource.OpenConnectionAsync(cancellationToken);
        var unsearchable = await connection.QueryAsync<string>(
            new CommandDefinition(sql, new { topics = topics.ToArray(), words = wordsOnly.Select(topic => topic.HasFilters ? null : topic.Words).ToArray() }, cancellationToken: cancellationToken));
        return [.. unsearchable];
    }
}
