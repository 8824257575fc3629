using Subscriptions.Matching;

namespace Subscriptions.Subscribers;

/// <summary>A signup that passed validation: a canonical address (<see cref="EmailAddresses"/>) and 1 to 20 distinct, searchable topics.</summary>
internal sealed record ValidSignup(string Email, IReadOnlyList<string> Topics, DeliveryChoice Delivery);

internal sealed class SignupValidator(TopicRules topicRules)
{
    /// <summary>Either the cleaned-up signup or the problems, keyed by field (<c>email</c>, <c>topics</c>, <c>topics[2]</c>).</summary>
    public async Task<(ValidSignup? Signup, Dictionary<string, string[]> Errors)> ValidateAsync(SignupRequest request, CancellationToken cancellationToken)
    {
        var errors = new Dictionary<string, string[]>();
        var address = ValidateEmail(request.Email, errors);
        var cleanTopics = await topicRules.ValidateAsync(request.Topics, errors, cancellationToken);
        var delivery = DeliveryChoice.Validate(request.TimeZone, request.DeliveryHour, request.Frequency, request.Weekday, errors);
        return errors.Count == 0 ? (new ValidSignup(address!, cleanTopics, delivery!), errors) : (null, errors);
    }

    private static string? ValidateEmail(string? email, Dictionary<string, string[]> errors)
    {
        var (address, problem) = EmailAddresses.Canonicalize(email);
        if (problem is not null)
        {
            errors["email"] = [problem];
        }
        return address;
    }
}
