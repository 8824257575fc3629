using System.Globalization;
using Microsoft.AspNetCore.Http.HttpResults;
using Subscriptions.Matching;
using Subscriptions.Web;

namespace Subscriptions.Subscribers;

/// <summary>The "change topics" link of every email: see and change topics and papers per email, with a preview.</summary>
internal static class PreferencesEndpoints
{
    public static IEndpointRouteBuilder MapPreferences(this IEndpointRouteBuilder endpoints)
    {
        var preferences = endpoints.MapGroup("/preferences");
        preferences.MapGet("", ShowAsync).RequireRateLimiting(MatchingExtensions.PreviewRateLimit);
        // Saving embeds the topics as a signup does, and counts against the same limit.
        preferences.MapPost("", SaveAsync).RequireRateLimiting(SubscriberExtensions.SignupRateLimit).WithSmallBody();
        preferences.MapGet("/export", ExportAsync);
        preferences.MapPost("/erase", EraseAsync).WithSmallBody();

        // "More/less like this" links of each paper in an email, signed as the preferences link is; ?remove=1 (POST) forgets one.
        var feedback = endpoints.MapGroup("/feedback");
        feedback.MapGet("", ShowFeedbackAsync);
        feedback.MapPost("", RateAsync).RequireRateLimiting(MatchingExtensions.PreviewRateLimit).WithSmallBody();
        return endpoints.MapFeed();
    }

    // "Download my data": everything stored about the subscription the link names, also after unsubscribing.
    private static async Task<Results<JsonHttpResult<SubscriberExport>, RazorComponentResult>> ExportAsync(
        HttpResponse response, string? token, LinkTokens tokens, SubscriberStore store, SubscriberData data, CancellationToken cancellationToken)
    {
        if (SubscriberEndpoints.RefuseLink(token, LinkPurpose.Preferences, tokens, out var link) is { } refusal)
        {
            return refusal;
        }
        if (await store.FindBySubscriptionAsync(link, cancellationToken) is not { } subscriber
            || await data.ExportAsync(subscriber.Id, cancellationToken) is not { } export)
        {
            return SubscriberPages.InvalidLink(LinkPurpose.Preferences);
        }
        response.Headers.ContentDisposition = "attachment; filename=\"my-trending-papers-data.json\"";
        return TypedResults.Json(export, SubscriberData.Json);
    }

    // "Delete everything": without confirm=yes, the page that asks; with it, the erasure.
    private static async Task<RazorComponentResult> EraseAsync(
        HttpRequest request, string? token, LinkTokens tokens, SubscriberStore store, SubscriberData data, CancellationToken cancellationToken)
    {
        if (SubscriberEndpoints.RefuseLink(token, LinkPurpose.Preferences, tokens, out var link) is { } refusal)
        {
            return refusal;
        }
        if (await store.FindBySubscriptionAsync(link, cancellationToken) is not { } subscriber)
        {
            return SubscriberPages.InvalidLink(LinkPurpose.Preferences);
        }
        var confirmed = request.HasFormContentType && (await request.ReadFormAsync(cancellationToken))["confirm"] == "yes";
        if (!confirmed)
        {
            return new RazorComponentResult<ErasePage>(new { subscriber.Email, Token = token! });
        }
        await data.EraseAsync(subscriber.Id, cancellationToken);
        return new RazorComponentResult<ErasePage>(new { Erased = true });
    }

    // Shows the saved settings, or (with ?preview=1) the typed ones with their preview, without saving.
    private static async Task<RazorComponentResult> ShowAsync(
        HttpRequest request, [AsParameters] PreferencesLink link, DigestPreview previews, CancellationToken cancellationToken)
    {
        if (await link.FindAsync(cancellationToken) is not ({ } subscriber, _))
        {
            return await link.UnsubscribedPageAsync(cancellationToken) ?? link.Refusal;
        }
        var token = link.Token!;
        var saved = subscriber.MaxPapers ?? previews.DefaultMaxPapers;
        var rated = await link.Feedback.RatedAsync(subscriber.Subscriber.Id, cancellationToken);
        if (request.Query["preview"] != "1")
        {
            var (preview, _) = await previews.BuildAsync(subscriber.Topics, date: null, saved, cancellationToken);
            return SubscriberPages.Preferences(subscriber, token, link.Feed(subscriber), string.Join('\n', subscriber.Topics), saved,
                preview: preview, rated: rated);
        }

        var topics = TopicRules.Lines(request.Query["topics"]);
        var (maxPapers, errors) = ParseMaxPapers(request.Query["max_papers"]);
        var (typedPreview, previewErrors) = await previews.BuildAsync(topics, date: null, maxPapers ?? saved, cancellationToken);
        foreach (var (key, value) in previewErrors)
        {
            errors[key] = value;
        }
        return SubscriberPages.Preferences(subscriber, token, link.Feed(subscriber), string.Join('\n', topics), maxPapers ?? saved, errors,
            preview: typedPreview, rated: rated,
            statusCode: errors.Count > 0 ? StatusCodes.Status400BadRequest : StatusCodes.Status200OK);
    }

    private static async Task<Results<RazorComponentResult, ProblemHttpResult>> SaveAsync(
        HttpRequest request, [AsParameters] PreferencesLink link, TopicRules topicRules, CancellationToken cancellationToken)
    {
        if (await link.FindAsync(cancellationToken) is not ({ } subscriber, var linkToken))
        {
            return link.Refusal;
        }
        if (!request.HasFormContentType)
        {
            return TypedResults.Problem(statusCode: StatusCodes.Status415UnsupportedMediaType, title: "Send the preferences form",
                detail: "Preferences are saved from the page's form (application/x-www-form-urlencoded).");
        }
        if (request.ContentLength > RequestLimits.SmallBody)
        {
            return TypedResults.Problem(statusCode: StatusCodes.Status413PayloadTooLarge, title: "The request body is too large");
        }

        var token = link.Token!;
        var form = await request.ReadFormAsync(cancellationToken);
        var (maxPapers, errors) = ParseMaxPapers(form["max_papers"]);
        var typedTopics = TopicRules.Lines(form["topics"]);
        var topics = await topicRules.ValidateAsync(typedTopics, errors, cancellationToken);
        // The delivery fields are optional: a form without any of them leaves the delivery time as it was.
        var deliveryGiven = DeliveryFields.Any(form.ContainsKey);
        var delivery = deliveryGiven
            ? DeliveryChoice.Validate(form["timeZone"], form["deliveryHour"], form["frequency"], form["weekday"], errors)
            : subscriber.Delivery;
        if (errors.Count > 0 || maxPapers is null || delivery is null)
        {
            return SubscriberPages.Preferences(subscriber, token, link.Feed(subscriber), string.Join('\n', typedTopics), maxPapers, errors,
                statusCode: StatusCodes.Status400BadRequest);
        }
        if (!await link.Store.SavePreferencesAsync(linkToken, topics, maxPapers.Value, deliveryGiven ? delivery : null, cancellationToken))
        {
            return SubscriberPages.InvalidLink(LinkPurpose.Preferences);
        }
        return SubscriberPages.Preferences(subscriber with { Topics = topics, MaxPapers = maxPapers, Delivery = delivery }, token, link.Feed(subscriber),
            string.Join('\n', topics), maxPapers, saved: true,
            rated: await link.Feedback.RatedAsync(subscriber.Subscriber.Id, cancellationToken));
    }

    private static async Task<RazorComponentResult> ShowFeedbackAsync(
        [AsParameters] PreferencesLink link, long? paper, int? more, CancellationToken cancellationToken)
    {
        if (await link.FindAsync(cancellationToken) is not ({ } subscriber, _))
        {
            return link.Refusal;
        }
        if (paper is not { } paperId || more is not (0 or 1)
            || await link.Feedback.PaperTitleAsync(subscriber.Subscriber.Id, paperId, sentOnly: true, cancellationToken) is not { } title)
        {
            return SubscriberPages.InvalidLink(LinkPurpose.Preferences);
        }
        return SubscriberPages.Feedback(link.Token!, paperId, title, liked: more == 1, done: false);
    }

    private static async Task<RazorComponentResult> RateAsync(
        [AsParameters] PreferencesLink link, long? paper, int? more, int? remove, DigestPreview previews, CancellationToken cancellationToken)
    {
        if (await link.FindAsync(cancellationToken) is not ({ } subscriber, _))
        {
            return link.Refusal;
        }
        var id = subscriber.Subscriber.Id;
        // A rating is removed whatever paper it is of (earlier versions took any); a new one is of a paper sent to them.
        if (paper is not { } paperId || await link.Feedback.PaperTitleAsync(id, paperId, sentOnly: remove != 1, cancellationToken) is not { } title)
        {
            return SubscriberPages.InvalidLink(LinkPurpose.Preferences);
        }
        if (remove == 1)
        {
            await link.Feedback.RemoveAsync(id, paperId, cancellationToken);
            var saved = subscriber.MaxPapers ?? previews.DefaultMaxPapers;
            return SubscriberPages.Preferences(subscriber, link.Token!, link.Feed(subscriber), string.Join('\n', subscriber.Topics), saved, saved: true,
                rated: await link.Feedback.RatedAsync(id, cancellationToken));
        }
        if (more is not (0 or 1))
        {
            return SubscriberPages.InvalidLink(LinkPurpose.Preferences);
        }
        return await link.Feedback.RateAsync(id, paperId, liked: more == 1, cancellationToken)
            ? SubscriberPages.Feedback(link.Token!, paperId, title, liked: more == 1, done: true)
            : SubscriberPages.InvalidLink(LinkPurpose.Preferences);
    }

    private static readonly string[] DeliveryFields = ["timeZone", "deliveryHour", "frequency", "weekday"];

    private static (int? MaxPapers, Dictionary<string, string[]> Errors) ParseMaxPapers(string? text)
    {
        var errors = new Dictionary<string, string[]>();
        if (int.TryParse(text, NumberStyles.None, CultureInfo.InvariantCulture, out var value) && value is >= 1 and <= 50)
        {
            return (value, errors);
        }
        errors["max_papers"] = ["must be a whole number from 1 to 50"];
        return (null, errors);
    }

    /// <summary>The <c>?token=</c> of a preferences link, and what it takes to find the subscription it names.</summary>
    private sealed record PreferencesLink(string? Token, LinkTokens Tokens, SubscriberStore Store, FeedbackStore Feedback)
    {
        /// <summary>The page shown when <see cref="FindAsync"/> found nothing: the token is missing, invalid, or its subscription over.</summary>
        public RazorComponentResult Refusal => string.IsNullOrEmpty(Token)
            ? SubscriberPages.MissingToken()
            : SubscriberPages.InvalidLink(LinkPurpose.Preferences);

        /// <summary>The subscriber's feed link, signed over the same subscription as this link.</summary>
        public Uri Feed(SubscriberPreferences subscriber) =>
            Tokens.TryRead(LinkPurpose.Preferences, Token, out var link) ? Tokens.Link(LinkPurpose.Feed, subscriber.Subscriber.Id, link.Nonce) : throw new InvalidOperationException("No valid link.");

        /// <summary>
        /// For a subscription that ended by unsubscribing, the page that says so with the links to its data (which this
        /// link still reaches); null for any other.
        /// </summary>
        public async Task<RazorComponentResult?> UnsubscribedPageAsync(CancellationToken cancellationToken) =>
            Tokens.TryRead(LinkPurpose.Preferences, Token, out var link)
                && await Store.FindBySubscriptionAsync(link, cancellationToken) is { Status: "unsubscribed" }
                ? SubscriberPages.Unsubscribed(UnsubscribeOutcome.AlreadyUnsubscribed, Token!)
                : null;

        public async Task<(SubscriberPreferences? Subscriber, LinkToken Link)> FindAsync(CancellationToken cancellationToken) =>
            SubscriberEndpoints.RefuseLink(Token, LinkPurpose.Preferences, Tokens, out var link) is null
                && await Store.GetPreferencesAsync(link, cancellationToken) is { } preferences
                ? (preferences, link)
                : (null, default);
    }
}
