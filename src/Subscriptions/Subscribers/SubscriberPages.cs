using Microsoft.AspNetCore.Http.HttpResults;
using Subscriptions.Matching;

namespace Subscriptions.Subscribers;

// Public, as the Razor component that takes it is.
public enum LifecycleMessage { SignupAccepted, Confirmed, AlreadyConfirmed, Expired, MissingToken, InvalidLink, Unsubscribed, AlreadyUnsubscribed }

/// <summary>The server-rendered pages of the lifecycle (Razor components in this folder); they work without JavaScript.</summary>
internal static class SubscriberPages
{
    public static RazorComponentResult Signup(
        string? email = null, string? topics = null, IReadOnlyDictionary<string, string[]>? errors = null,
        int statusCode = StatusCodes.Status200OK, Preview? preview = null, SignupRequest? typed = null) =>
        new RazorComponentResult<SignupPage>(new
        {
            Email = email,
            Topics = topics,
            Errors = errors,
            Preview = preview,
            typed?.TimeZone,
            Hour = int.TryParse(typed?.DeliveryHour, out var hour) ? hour : (int?)null,
            typed?.Frequency,
            typed?.Weekday,
        })
        { StatusCode = statusCode };

    public static RazorComponentResult SignupAccepted() => Message(LifecycleMessage.SignupAccepted, StatusCodes.Status202Accepted);

    public static RazorComponentResult Confirmed(ConfirmOutcome outcome) => outcome switch
    {
        ConfirmOutcome.Confirmed => Message(LifecycleMessage.Confirmed),
        ConfirmOutcome.AlreadyConfirmed => Message(LifecycleMessage.AlreadyConfirmed),
        ConfirmOutcome.Expired => Message(LifecycleMessage.Expired, StatusCodes.Status410Gone),
        _ => InvalidLink(LinkPurpose.Confirm),
    };

    public static RazorComponentResult MissingToken() => Message(LifecycleMessage.MissingToken, StatusCodes.Status400BadRequest);

    public static RazorComponentResult InvalidLink(LinkPurpose purpose) =>
        new RazorComponentResult<LifecyclePage>(new { Message = LifecycleMessage.InvalidLink, Purpose = purpose }) { StatusCode = StatusCodes.Status404NotFound };

    public static RazorComponentResult UnsubscribeForm(SubscriberLink subscriber, string token, string preferencesToken) => subscriber.Status == "unsubscribed"
        ? Unsubscribed(UnsubscribeOutcome.AlreadyUnsubscribed, preferencesToken)
        : new RazorComponentResult<UnsubscribePage>(new { subscriber.Email, Token = token });

    /// <summary>
    /// The page after unsubscribing, with the links to the subscriber's data (<c>preferencesToken</c>): kept until they
    /// erase it, so the page that ends the subscription is where they find them.
    /// </summary>
    public static RazorComponentResult Unsubscribed(UnsubscribeOutcome outcome, string preferencesToken) =>
        new RazorComponentResult<LifecyclePage>(new
        {
            Message = outcome == UnsubscribeOutcome.AlreadyUnsubscribed ? LifecycleMessage.AlreadyUnsubscribed : LifecycleMessage.Unsubscribed,
            DataToken = preferencesToken,
        });

    public static RazorComponentResult Preferences(
        SubscriberPreferences subscriber, string token, Uri feed, string topics, int? maxPapers, IReadOnlyDictionary<string, string[]>? errors = null,
        Preview? preview = null, bool saved = false, int statusCode = StatusCodes.Status200OK, IReadOnlyList<RatedPaper>? rated = null) =>
        new RazorComponentResult<PreferencesPage>(new
        {
            subscriber.Subscriber.Email,
            Token = token,
            FeedUrl = feed.AbsoluteUri,
            subscriber.Delivery.TimeZone,
            subscriber.Delivery.Hour,
            subscriber.Delivery.Frequency,
            Weekday = subscriber.Delivery.WeekdayName,
            Topics = topics,
            MaxPapers = maxPapers,
            Errors = errors,
            Preview = preview,
            Saved = saved,
            Rated = rated,
        })
        { StatusCode = statusCode };

    public static RazorComponentResult Feedback(string token, long paperId, string title, bool liked, bool done) =>
        new RazorComponentResult<FeedbackPage>(new { Token = token, PaperId = paperId, Title = title, Liked = liked, Done = done });

    private static RazorComponentResult Message(LifecycleMessage message, int statusCode = StatusCodes.Status200OK) =>
        new RazorComponentResult<LifecyclePage>(new { Message = message }) { StatusCode = statusCode };
}
