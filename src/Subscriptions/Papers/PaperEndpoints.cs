using System.Globalization;
using Microsoft.AspNetCore.Http.HttpResults;

namespace Subscriptions.Papers;

internal static class PaperEndpoints
{
    public static IEndpointRouteBuilder MapPapers(this IEndpointRouteBuilder endpoints)
    {
        var papers = endpoints.MapGroup("/api/papers");
        papers.MapGet("", GetPapersAsync);
        return endpoints;
    }

    private static async Task<Results<Ok<DayPapersResponse>, ValidationProblem>> GetPapersAsync(
        string? date, PaperStore store, CancellationToken cancellationToken)
    {
        if (!DateOnly.TryParseExact(date, "yyyy-MM-dd", CultureInfo.InvariantCulture, DateTimeStyles.None, out var day))
        {
            return TypedResults.ValidationProblem(
                new Dictionary<string, string[]> { ["date"] = ["must be a day as YYYY-MM-DD, e.g. ?date=2026-11-25"] },
                title: "Which day's papers?");
        }
        var papers = await store.PapersOfDayAsync(day, cancellationToken);
        return TypedResults.Ok(new DayPapersResponse(day.ToString("yyyy-MM-dd", CultureInfo.InvariantCulture), papers.Count, papers));
    }

    private sealed record DayPapersResponse(string Date, int Count, IReadOnlyList<DayPaper> Papers);
}
