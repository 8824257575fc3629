using MimeKit;
using Subscriptions.Matching;

namespace Subscriptions.Subscribers;

/// <summary>A signup that passed validation: a bare address and 1 to 20 distinct, searchable topics.</summary>
internal sealed record ValidSignup(string Email, IReadOnlyList<string> Topics);

internal sealed class SignupValidator(TopicRules topicRules)
{
    public const int MaxEmailLength = 254;

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
        var cleanTopics = await topicRules.ValidateAsync(topics, errors, cancellationToken);
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
}
