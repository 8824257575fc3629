using System.Globalization;
using System.Threading.RateLimiting;
using Microsoft.Extensions.Options;
using Subscriptions.Configuration;
using Subscriptions.Email;
using Subscriptions.Matching;

namespace Subscriptions.Subscribers;

internal static class SubscriberEndpoints
{
    public const string SignupRateLimit = "signup";

    /// <summary>The same answer for every valid signup, so the response never tells whether an address was known.</summary>
    public const string AcceptedMessage =
        "Thanks! If the address can receive mail, a message with a confirmation link is on its way. Follow it to start your daily email.";

    /// <summary>The signed links in emails (needs only <c>App:*</c>).</summary>
    public static IServiceCollection AddLinks(this IServiceCollection services)
    {
        services.AddSection<AppOptions>(AppOptions.Section);
        services.AddSingleton<LinkTokens>();
        return services;
    }

    public static IServiceCollection AddSubscribers(this IServiceCollection services)
    {
        services.AddLinks();
        services.AddSingleton<SubscriberStore>();
        services.AddSingleton<SignupValidator>();

        services.AddRateLimiter(options =>
        {
            options.AddPolicy(SignupRateLimit, context =>
            {
                var perMinute = context.RequestServices.GetRequiredService<IOptions<AppOptions>>().Value.SignupsPerMinute;
                return RateLimitPartition.GetFixedWindowLimiter(
                    context.Connection.RemoteIpAddress?.ToString() ?? "unknown",
                    _ => new FixedWindowRateLimiterOptions { PermitLimit = perMinute, Window = TimeSpan.FromMinutes(1), QueueLimit = 0 });
            });
            options.RejectionStatusCode = StatusCodes.Status429TooManyRequests;
            options.OnRejected = async (context, cancellationToken) =>
            {
                var retryAfter = context.Lease.TryGetMetadata(MetadataName.RetryAfter, out var wait) ? wait : TimeSpan.FromMinutes(1);
                var seconds = Math.Max(1, (int)Math.Ceiling(retryAfter.TotalSeconds));
                context.HttpContext.Response.Headers.RetryAfter = seconds.ToString(CultureInfo.InvariantCulture);
                await TypedResults.Problem(
                        statusCode: StatusCodes.Status429TooManyRequests,
                        title: "Too many signups from this address",
                        detail: $"Try again in {seconds} seconds.")
                    .ExecuteAsync(context.HttpContext);
            };
        });
        return services;
    }

    public static IEndpointRouteBuilder MapSubscribers(this IEndpointRouteBuilder endpoints)
    {
        endpoints.MapGet("/", ShowSignupAsync);
        endpoints.MapPost("/subscriptions", SignUpAsync).RequireRateLimiting(SignupRateLimit);
        endpoints.MapGet("/subscriptions/confirm", ConfirmAsync);
        endpoints.MapGet("/unsubscribe", ShowUnsubscribeAsync);
        endpoints.MapPost("/unsubscribe", UnsubscribeAsync);
        endpoints.MapPreferences();
        return endpoints;
    }

    // The page's "Preview" button submits the form here by GET: the same page, with what today's email would hold.
    private static async Task<IResult> ShowSignupAsync(HttpRequest request, DigestPreview previews, CancellationToken cancellationToken)
    {
        if (request.Query["preview"] != "1")
        {
            return SubscriberPages.Signup();
        }
        var topics = SignupRequest.TopicLines(request.Query["topics"]);
        var (preview, errors) = await previews.BuildAsync(topics, date: null, maxPapers: null, cancellationToken);
        return SubscriberPages.Signup(request.Query["email"], string.Join('\n', topics), errors,
            preview is null ? StatusCodes.Status400BadRequest : StatusCodes.Status200OK,
            preview is null ? "" : MatchingEndpoints.RenderHtml(preview));
    }

    private static async Task<IResult> SignUpAsync(
        HttpRequest request, SignupValidator validator, SubscriberStore store, OutboxSignal outbox, CancellationToken cancellationToken)
    {
        var (signup, problem) = await SignupRequest.ReadAsync(request, cancellationToken);
        if (signup is null)
        {
            return problem!;
        }

        var answerWithPage = signup.FromForm && request.Headers.Accept.Any(value => value?.Contains("text/html", StringComparison.OrdinalIgnoreCase) == true);
        var (valid, errors) = await validator.ValidateAsync(signup.Email, signup.Topics, cancellationToken);
        if (valid is null)
        {
            return answerWithPage
                ? SubscriberPages.Signup(signup.Email, string.Join('\n', signup.Topics ?? []), errors, StatusCodes.Status400BadRequest)
                : TypedResults.ValidationProblem(errors, title: "The signup has invalid fields");
        }

        await store.SignUpAsync(valid.Email, valid.Topics, cancellationToken);
        outbox.Wake();
        return answerWithPage
            ? SubscriberPages.SignupAccepted()
            : TypedResults.Json(new { status = "accepted", message = AcceptedMessage }, statusCode: StatusCodes.Status202Accepted);
    }

    private static async Task<IResult> ConfirmAsync(string? token, LinkTokens tokens, SubscriberStore store, CancellationToken cancellationToken)
    {
        if (string.IsNullOrEmpty(token))
        {
            return SubscriberPages.MissingToken();
        }
        if (!tokens.TryRead(LinkPurpose.Confirm, token, out var link))
        {
            return SubscriberPages.InvalidLink("confirmation");
        }
        return SubscriberPages.Confirmed(await store.ConfirmAsync(link, cancellationToken));
    }

    // A GET only shows the button: mail scanners and link previews fetch every link they see.
    private static async Task<IResult> ShowUnsubscribeAsync(string? token, LinkTokens tokens, SubscriberStore store, CancellationToken cancellationToken)
    {
        if (string.IsNullOrEmpty(token))
        {
            return SubscriberPages.MissingToken();
        }
        if (!tokens.TryRead(LinkPurpose.Unsubscribe, token, out var link)
            || await store.FindBySubscriptionAsync(link, cancellationToken) is not { } subscriber)
        {
            return SubscriberPages.InvalidLink("unsubscribe");
        }
        return SubscriberPages.UnsubscribeForm(subscriber, token);
    }

    // The page's button and RFC 8058 one-click (body "List-Unsubscribe=One-Click") both land here;
    // the token alone decides, whatever the body holds.
    private static async Task<IResult> UnsubscribeAsync(string? token, LinkTokens tokens, SubscriberStore store, CancellationToken cancellationToken)
    {
        if (string.IsNullOrEmpty(token))
        {
            return SubscriberPages.MissingToken();
        }
        if (!tokens.TryRead(LinkPurpose.Unsubscribe, token, out var link))
        {
            return SubscriberPages.InvalidLink("unsubscribe");
        }
        var outcome = await store.UnsubscribeAsync(link, cancellationToken);
        return outcome == UnsubscribeOutcome.Unknown
            ? SubscriberPages.InvalidLink("unsubscribe")
            : SubscriberPages.Unsubscribed(outcome);
    }
}
