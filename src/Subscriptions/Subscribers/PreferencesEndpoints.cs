using System.Globalization;
using Microsoft.Extensions.Options;
using Subscriptions.Configuration;
using Subscriptions.Matching;

namespace Subscriptions.Subscribers;

/// <summary>The "change topics" link of every email: see and change topics and papers per email, with a preview.</summary>
internal static class PreferencesEndpoints
{
    public static IEndpointRouteBuilder MapPreferences(this IEndpointRouteBuilder endpoints)
    {
        endpoints.MapGet("/preferences", ShowAsync);
        endpoints.MapPost("/preferences", SaveAsync);
        return endpoints;
    }

    // Shows the saved settings, or (with ?preview=1) the typed ones with their preview, without saving.
    private static async Task<IResult> ShowAsync(
        HttpRequest request, LinkTokens tokens, SubscriberStore store, DigestPreview previews, IOptions<DigestOptions> digest,
        CancellationToken cancellationToken)
    {
        var token = request.Query["token"].ToString();
        if (await FindAsync(token, tokens, store, cancellationToken) is not { } found)
        {
            return string.IsNullOrEmpty(token) ? SubscriberPages.MissingToken() : SubscriberPages.InvalidLink("preferences");
        }
        var (subscriber, _) = found;
        var saved = subscriber.MaxPapers ?? digest.Value.MaxPapers;
        if (request.Query["preview"] != "1")
        {
            var (preview, _) = await previews.BuildAsync(subscriber.Topics, date: null, saved, cancellationToken);
            return SubscriberPages.Preferences(subscriber, token, string.Join('\n', subscriber.Topics), saved,
                preview: preview is null ? "" : MatchingEndpoints.RenderHtml(preview));
        }

        var topics = SignupRequest.TopicLines(request.Query["topics"]);
        var (maxPapers, errors) = ParseMaxPapers(request.Query["max_papers"]);
        var (typedPreview, previewErrors) = await previews.BuildAsync(topics, date: null, maxPapers ?? saved, cancellationToken);
        foreach (var (key, value) in previewErrors)
        {
            errors[key] = value;
        }
        return SubscriberPages.Preferences(subscriber, token, string.Join('\n', topics), maxPapers ?? saved, errors,
            preview: typedPreview is null ? "" : MatchingEndpoints.RenderHtml(typedPreview),
            statusCode: errors.Count > 0 ? StatusCodes.Status400BadRequest : StatusCodes.Status200OK);
    }

    private static async Task<IResult> SaveAsync(
        HttpRequest request, LinkTokens tokens, SubscriberStore store, SignupValidator validator, CancellationToken cancellationToken)
    {
        var token = request.Query["token"].ToString();
        if (await FindAsync(token, tokens, store, cancellationToken) is not { } found)
        {
            return string.IsNullOrEmpty(token) ? SubscriberPages.MissingToken() : SubscriberPages.InvalidLink("preferences");
        }
        if (!request.HasFormContentType)
        {
            return TypedResults.Problem(statusCode: StatusCodes.Status415UnsupportedMediaType, title: "Send the preferences form",
                detail: "Preferences are saved from the page's form (application/x-www-form-urlencoded).");
        }
        if (request.ContentLength > SignupRequest.MaxBodyBytes)
        {
            return TypedResults.Problem(statusCode: StatusCodes.Status413PayloadTooLarge, title: "The request body is too large");
        }

        var form = await request.ReadFormAsync(cancellationToken);
        var (maxPapers, errors) = ParseMaxPapers(form["max_papers"]);
        var topics = await validator.ValidateTopicsAsync(SignupRequest.TopicLines(form["topics"]), errors, cancellationToken);
        var (subscriber, link) = found;
        if (errors.Count > 0 || maxPapers is null)
        {
            return SubscriberPages.Preferences(subscriber, token, string.Join('\n', SignupRequest.TopicLines(form["topics"])), maxPapers, errors,
                statusCode: StatusCodes.Status400BadRequest);
        }
        if (!await store.SavePreferencesAsync(link, topics, maxPapers.Value, cancellationToken))
        {
            return SubscriberPages.InvalidLink("preferences");
        }
        return SubscriberPages.Preferences(subscriber with { Topics = topics, MaxPapers = maxPapers }, token, string.Join('\n', topics), maxPapers, saved: true);
    }

    private static async Task<(SubscriberPreferences, LinkToken)?> FindAsync(
        string token, LinkTokens tokens, SubscriberStore store, CancellationToken cancellationToken) =>
        tokens.TryRead(LinkPurpose.Preferences, token, out var link) && await store.GetPreferencesAsync(link, cancellationToken) is { } preferences
            ? (preferences, link)
            : null;

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
}
