using System.Globalization;
using Microsoft.AspNetCore.Http.HttpResults;

namespace Subscriptions.Papers;

internal static class PaperEndpoints
{
    public static IEndpointRouteBuilder MapPapers(this IEndpointRouteBuilder endpoints)
    {
        var papers = endpoints.MapGroup("/api/papers");
        papers.MapGet("", GetPapersAsync);

        // The public archive: an index of days, and a page per day. Anything but a stored day is a bare 404. The index counts
        // the papers of every day ever stored (a thousand days in three years), for anyone who asks: it is kept a minute.
        var archive = endpoints.MapGroup("/papers");
        archive.MapGet("", async (PaperStore store, CancellationToken cancellationToken) =>
            new RazorComponentResult<ArchiveIndexPage>(new { Days = await store.DaysAsync(cancellationToken) }))
            .CacheOutput(policy => policy.Expire(TimeSpan.FromMinutes(1)));
        archive.MapGet("/{date}", GetArchiveDayAsync);
        return endpoints;
    }

    private static async Task<Results<RazorComponentResult, NotFound>> GetArchiveDayAsync(string date, PaperStore store, CancellationToken cancellationToken)
    {
        if (!DateOnly.TryParseExact(date, "yyyy-MM-dd", CultureInfo.InvariantCulture, DateTimeStyles.None, out var day)
            || await store.PapersOfDayAsync(day, cancellationToken) is not { Count: > 0 } papers)
        {
            return TypedResults.NotFound();
        }
        return new RazorComponentResult<ArchiveDayPage>(new { Day = day, Papers = papers });
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
