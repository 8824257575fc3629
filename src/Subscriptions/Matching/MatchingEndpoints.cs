using System.Globalization;
using Subscriptions.Configuration;
using Subscriptions.Subscribers;

namespace Subscriptions.Matching;

internal static class MatchingEndpoints
{
    public static IServiceCollection AddMatching(this IServiceCollection services)
    {
        services.AddSection<DigestOptions>(DigestOptions.Section);
        services.AddSingleton<TopicMatcher>();
        services.AddSingleton<DigestPreview>();
        return services;
    }

    public static IEndpointRouteBuilder MapMatching(this IEndpointRouteBuilder endpoints)
    {
        endpoints.MapGet("/api/preview", GetPreviewAsync);
        return endpoints;
    }

    // ?topics=a&topics=b (or one value with a topic per line) &date=YYYY-MM-DD (default: the latest day ingested)
    private static async Task<IResult> GetPreviewAsync(HttpRequest request, DigestPreview previews, CancellationToken cancellationToken)
    {
        var (preview, errors) = await previews.BuildAsync(
            SignupRequest.TopicLines(request.Query["topics"]), request.Query["date"], maxPapers: null, cancellationToken);
        if (preview is null)
        {
            return TypedResults.ValidationProblem(errors, title: "The preview has invalid parameters");
        }
        return TypedResults.Ok(new
        {
            date = preview.Day?.ToString("yyyy-MM-dd", CultureInfo.InvariantCulture),
            preview.Topics,
            preview.MaxPapers,
            count = preview.Papers.Count,
            papers = preview.Papers,
        });
    }

    /// <summary>The preview as a section of an HTML page.</summary>
    public static string RenderHtml(Preview preview)
    {
        if (preview.Day is not { } day)
        {
            return "<section aria-labelledby=\"preview\"><h2 id=\"preview\" style=\"font-size:1.1em\">Preview</h2><p>No papers have been collected yet, so there is nothing to preview.</p></section>";
        }
        var date = day.ToString("d MMMM yyyy", CultureInfo.InvariantCulture);
        var items = preview.Papers.Count == 0
            ? $"<p>No paper of {date} matches these topics.</p>"
            : "<ol style=\"padding-left:1.2em\">" + string.Concat(preview.Papers.Select(paper =>
                $"<li style=\"margin-bottom:8px\"><a href=\"{Html.Encode(paper.PageUrl ?? "#")}\">{Html.Encode(paper.Title)}</a>" +
                (paper.Upvotes is { } upvotes ? $" <span style=\"color:#555\">▲ {upvotes}</span>" : "") +
                $"<br><small style=\"color:#555\">matched: {Html.Encode(string.Join(", ", paper.MatchedTopics))}</small></li>")) + "</ol>";
        return $"<section aria-labelledby=\"preview\"><h2 id=\"preview\" style=\"font-size:1.1em\">The email for {date} would hold {preview.Papers.Count} paper{(preview.Papers.Count == 1 ? "" : "s")}</h2>{items}</section>";
    }
}
