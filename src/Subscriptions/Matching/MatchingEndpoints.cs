using System.Globalization;
using Microsoft.AspNetCore.Http.HttpResults;

namespace Subscriptions.Matching;

internal static class MatchingEndpoints
{
    public static IEndpointRouteBuilder MapMatching(this IEndpointRouteBuilder endpoints)
    {
        var preview = endpoints.MapGroup("/api/preview");
        preview.MapGet("", GetPreviewAsync).RequireRateLimiting(MatchingExtensions.PreviewRateLimit);
        return endpoints;
    }

    // ?topics=a&topics=b (or one value with a topic per line) &date=YYYY-MM-DD (default: the latest day ingested)
    private static async Task<Results<Ok<PreviewResponse>, ValidationProblem>> GetPreviewAsync(
        HttpRequest request, DigestPreview previews, CancellationToken cancellationToken)
    {
        var (preview, errors) = await previews.BuildAsync(
            TopicRules.Lines(request.Query["topics"]), request.Query["date"], maxPapers: null, cancellationToken);
        if (preview is null)
        {
            return TypedResults.ValidationProblem(errors, title: "The preview has invalid parameters");
        }
        return TypedResults.Ok(new PreviewResponse(
            preview.Day?.ToString("yyyy-MM-dd", CultureInfo.InvariantCulture), preview.Topics, preview.MaxPapers, preview.Papers.Count, preview.Papers));
    }

    private sealed record PreviewResponse(string? Date, IReadOnlyList<string> Topics, int MaxPapers, int Count, IReadOnlyList<PreviewPaper> Papers);
}
