using Dapper;
using MimeKit;
using Npgsql;

namespace Subscriptions.Subscribers;

/// <summary>A signup that passed validation: a bare address and 1 to 20 distinct, searchable topics.</summary>
internal sealed record ValidSignup(string Email, IReadOnlyList<string> Topics);

internal sealed class SignupValidator(NpgsqlDataSource dataSource)
{
    public const int MaxEmailLength = 254;
    public const int MaxTopics = 20;
    public const int MaxTopicLength = 200;

    private static readonly ParserOptions StrictAddresses = new()
    {
        AllowAddressesWithoutDomain = false,
        AllowUnquotedCommasInAddresses = false,
        AddressParserComplianceMode = RfcComplianceMode.Strict,
    };

    /// <summary>Either the cleaned-up signup or the problems, keyed by field (<c>email</c>, <c>topics</c>, <c>topics[2]</c>).</summary>
    public async Task<(ValidSignup? Signup, Dictionary<string, string[]> Errors)> ValidateAsync(
        string? email, IReadOnlyList<string>? topics, CancellationToken cancellationToken)
    {
        var errors = new Dictionary<string, string[]>();
        var address = ValidateEmail(email, errors);
        var cleanTopics = await ValidateTopicsAsync(topics, errors, cancellationToken);
        return errors.Count == 0 ? (new ValidSignup(address!, cleanTopics), errors) : (null, errors);
    }

    private static string? ValidateEmail(string? email, Dictionary<string, string[]> errors)
    {
        string? problem = null;
        // Line breaks are refused wherever they are, before any trimming: they are how header injection starts.
        if (email is not null && email.Any(char.IsControl))
        {
            problem = "must not contain line breaks or control characters";
        }
        else if (string.IsNullOrWhiteSpace(email))
        {
            problem = "is required";
        }
        else if ((email = email.Trim(' ')).Length > MaxEmailLength)
        {
            problem = $"must be at most {MaxEmailLength} characters";
        }
        else if (!MailboxAddress.TryParse(StrictAddresses, email, out var mailbox))
        {
            problem = "is not an email address";
        }
        else if (!string.IsNullOrEmpty(mailbox.Name) || mailbox.Route.Count > 0)
        {
            problem = "must be the bare address, without a display name (name@example.org)";
        }
        else if (mailbox.Address != email)
        {
            problem = "must be a single address (name@example.org)";
        }
        else if (!mailbox.Domain.Contains('.', StringComparison.Ordinal) || mailbox.Domain.StartsWith('[') || mailbox.Domain.EndsWith('.'))
        {
            problem = "must have a full domain name (name@example.org)";
        }

        if (problem is not null)
        {
            errors["email"] = [problem];
            return null;
        }
        return email;
    }

    /// <summary>The topic rules alone (for previews and preferences): cleaned-up topics, or the errors added.</summary>
    public async Task<List<string>> ValidateTopicsAsync(
        IReadOnlyList<string>? topics, Dictionary<string, string[]> errors, CancellationToken cancellationToken)
    {
        // Blank lines and repeats (ignoring case) are dropped; positions in errors refer to what remains.
        var clean = (topics ?? [])
            .Select(topic => topic.Trim())
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
        const string sql = """
            SELECT topic FROM unnest(@topics) AS t(topic)
            WHERE querytree(topic_query(topic)) IN ('', 'T')
            """;
        await using var connection = await dataSource.OpenConnectionAsync(cancellationToken);
        var unsearchable = await connection.QueryAsync<string>(
            new CommandDefinition(sql, new { topics = topics.ToArray() }, cancellationToken: cancellationToken));
        return [.. unsearchable];
    }
}
