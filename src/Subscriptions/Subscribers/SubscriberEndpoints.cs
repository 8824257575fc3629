using Microsoft.AspNetCore.Http.HttpResults;
using Subscriptions.Matching;
using Subscriptions.Observability;
using Subscriptions.Web;

namespace Subscriptions.Subscribers;

internal static class SubscriberEndpoints
{
    /// <summary>The same answer for every valid signup, so the response never tells whether an address was known.</summary>
    public const string AcceptedMessage =
        "Thanks! If the address can receive mail, a message with a confirmation link is on its way. Follow it to start your daily email.";

    public static IEndpointRouteBuilder MapSubscribers(this IEndpointRouteBuilder endpoints)
    {
        endpoints.MapGet("/", ShowSignupAsync).RequireRateLimiting(MatchingExtensions.PreviewRateLimit);

        var subscriptions = endpoints.MapGroup("/subscriptions");
        subscriptions.MapPost("", SignUpAsync).RequireRateLimiting(SubscriberExtensions.SignupRateLimit).WithSmallBody();
        subscriptions.MapGet("/confirm", ConfirmAsync);

        var unsubscribe = endpoints.MapGroup("/unsubscribe");
        unsubscribe.MapGet("", ShowUnsubscribeAsync);
        unsubscribe.MapPost("", UnsubscribeAsync).WithSmallBody();
        return endpoints;
    }

    /// <summary>Reads a link's token; null when it is usable, else the page that says why not.</summary>
    public static RazorComponentResult? RefuseLink(string? token, LinkPurpose purpose, LinkTokens tokens, out LinkToken link)
    {
        link = default;
        if (string.IsNullOrEmpty(token))
        {
            return SubscriberPages.MissingToken();
        }
        return tokens.TryRead(purpose, token, out link) ? null : SubscriberPages.InvalidLink(purpose);
    }

    // The page's "Preview" button submits the form here by GET: the same page, with what today's email would hold.
    private static async Task<RazorComponentResult> ShowSignupAsync(HttpRequest request, DigestPreview previews, CancellationToken cancellationToken)
    {
        if (request.Query["preview"] != "1")
        {
            return SubscriberPages.Signup();
        }
        var topics = TopicRules.Lines(request.Query["topics"]);
        var (preview, errors) = await previews.BuildAsync(topics, date: null, maxPapers: null, cancellationToken);
        return SubscriberPages.Signup(request.Query["email"], string.Join('\n', topics), errors,
            preview is null ? StatusCodes.Status400BadRequest : StatusCodes.Status200OK, preview);
    }

    private static async Task<Results<RazorComponentResult, JsonHttpResult<SignupAccepted>, ProblemHttpResult, ValidationProblem>> SignUpAsync(
        HttpRequest request, SignupValidator validator, SubscriberStore store, SignupGate gate, ServiceMetrics metrics, CancellationToken cancellationToken)
    {
        var (signup, problem) = await SignupRequest.ReadAsync(request, cancellationToken);
        if (signup is null)
        {
            return problem!;
        }

        var answerWithPage = signup.FromForm && request.Headers.Accept.Any(value => value?.Contains("text/html", StringComparison.OrdinalIgnoreCase) == true);
        if (signup.FilledHoneypot)
        {
            // A bot: it gets the answer everyone gets, so it learns nothing, and nothing is stored or sent.
            return Accepted(answerWithPage);
        }
        using var turn = await gate.EnterAsync(cancellationToken);
        var (valid, errors) = await validator.ValidateAsync(signup, cancellationToken);
        if (valid is null)
        {
            return answerWithPage
                ? SubscriberPages.Signup(signup.Email, string.Join('\n', signup.Topics ?? []), errors, StatusCodes.Status400BadRequest, typed: signup)
                : TypedResults.ValidationProblem(errors, title: "The signup has invalid fields");
        }

        await store.SignUpAsync(valid.Email, valid.Topics, valid.Delivery, cancellationToken);
        metrics.SignupAccepted();
        return Accepted(answerWithPage);
    }

    private static Results<RazorComponentResult, JsonHttpResult<SignupAccepted>, ProblemHttpResult, ValidationProblem> Accepted(bool answerWithPage) =>
        answerWithPage
            ? SubscriberPages.SignupAccepted()
            : TypedResults.Json(new SignupAccepted("accepted", AcceptedMessage), statusCode: StatusCodes.Status202Accepted);

    private static async Task<RazorComponentResult> ConfirmAsync(
        string? token, LinkTokens tokens, SubscriberStore store, ServiceMetrics metrics, CancellationToken cancellationToken)
    {
        if (RefuseLink(token, LinkPurpose.Confirm, tokens, out var link) is { } refusal)
        {
            return refusal;
        }
        var outcome = await store.ConfirmAsync(link, cancellationToken);
        if (outcome == ConfirmOutcome.Confirmed)
        {
            metrics.Confirmed();
        }
        return SubscriberPages.Confirmed(outcome);
    }

    // A GET only shows the button: mail scanners and link previews fetch every link they see.
    private static async Task<RazorComponentResult> ShowUnsubscribeAsync(string? token, LinkTokens tokens, SubscriberStore store, CancellationToken cancellationToken)
    {
        if (RefuseLink(token, LinkPurpose.Unsubscribe, tokens, out var link) is { } refusal)
        {
            return refusal;
        }
        return await store.FindBySubscriptionAsync(link, cancellationToken) is { } subscriber
            ? SubscriberPages.UnsubscribeForm(subscriber, token!, tokens.Create(LinkPurpose.Preferences, link.SubscriberId, link.Nonce))
            : SubscriberPages.InvalidLink(LinkPurpose.Unsubscribe);
    }

    // The page's button and RFC 8058 one-click (body "List-Unsubscribe=One-Click") both land here;
    // the token alone decides, whatever the body holds.
    private static async Task<RazorComponentResult> UnsubscribeAsync(
        string? token, LinkTokens tokens, SubscriberStore store, ServiceMetrics metrics, CancellationToken cancellationToken)
    {
        if (RefuseLink(token, LinkPurpose.Unsubscribe, tokens, out var link) is { } refusal)
        {
            return refusal;
        }
        var outcome = await store.UnsubscribeAsync(link, cancellationToken);
        if (outcome == UnsubscribeOutcome.Unsubscribed)
        {
            metrics.Unsubscribed();
        }
        return outcome == UnsubscribeOutcome.Unknown
            ? SubscriberPages.InvalidLink(LinkPurpose.Unsubscribe)
            : SubscriberPages.Unsubscribed(outcome, tokens.Create(LinkPurpose.Preferences, link.SubscriberId, link.Nonce));
    }

    private sealed record SignupAccepted(string Status, string Message);
}
