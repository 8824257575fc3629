using Microsoft.Extensions.Options;
using Polly.CircuitBreaker;
using Polly.Timeout;
using Subscriptions.Meaning;
using Subscriptions.Observability;

namespace Subscriptions.Papers;

/// <summary>What ingesting one source did; <see cref="Error"/> is set when the source failed as a whole.</summary>
internal sealed record SourceReport(string Source, int Fetched, int New, int Updated, int Unchanged, IReadOnlyList<string> Skipped, string? Error)
{
    public bool Failed => Error is not null;

    public override string ToString() => Failed
        ? $"{Source,-12} FAILED: {Error}"
        : $"{Source,-12} fetched {Fetched,4}  new {New,4}  updated {Updated,4}  unchanged {Unchanged,4}  skipped {Skipped.Count,4}";
}

/// <summary>
/// Fetches one day's papers from each source and stores them. Sources run side by side and fail
/// alone: one that is down, or that answers with something that is not its format, is reported and
/// the others still land. Within a source, a malformed record is skipped, counted and named.
/// </summary>
internal sealed class PaperIngest(
    IServiceProvider services, PaperStore store, EmbeddingStore embeddings, TextEmbedder embedder, IOptions<PapersOptions> options, ServiceMetrics metrics,
    ILogger<PaperIngest> logger)
{
    public async Task<IReadOnlyList<SourceReport>> IngestAsync(
        DateOnly day, IReadOnlyList<string>? sources, string? file, CancellationToken cancellationToken)
    {
        var names = sources is { Count: > 0 } ? sources : options.Value.SourceList;
        var reports = await Task.WhenAll(names.Select(name => IngestSourceAsync(day, name.ToLowerInvariant(), file, cancellationToken)));
        if (embedder.Enabled)
        {
            await embeddings.EmbedDayAsync(day, cancellationToken);
        }
        return reports;
    }

    private async Task<SourceReport> IngestSourceAsync(DateOnly day, string name, string? file, CancellationToken cancellationToken)
    {
        ParsedPapers fetched;
        try
        {
            fetched = await CreateSource(name, file).FetchAsync(day, cancellationToken);
        }
        catch (Exception e) when (!cancellationToken.IsCancellationRequested && IsSourceFailure(e))
        {
            var error = Describe(e);
            logger.LogError("Source {Source} failed for {Day}: {Error}", name, day, error);
            return new SourceReport(name, 0, 0, 0, 0, [], error);
        }

        var skipped = fetched.Skipped.ToList();
        var unique = new List<PaperRecord>();
        var seen = new HashSet<string>();
        foreach (var paper in fetched.Papers)
        {
            if (seen.Add(paper.Key))
            {
                unique.Add(paper);
            }
            else
            {
                skipped.Add($"\"{paper.Title}\": listed twice");
            }
        }
        foreach (var reason in skipped)
        {
            logger.LogWarning("Source {Source} on {Day}: skipped {Reason}", name, day, reason);
        }

        var stored = await store.SaveDayAsync(day, name, unique, cancellationToken);
        metrics.PapersIngested(name, unique.Count);
        logger.LogInformation("Source {Source} on {Day}: {New} new, {Updated} updated, {Unchanged} unchanged, {Skipped} skipped",
            name, day, stored.New, stored.Updated, stored.Unchanged, skipped.Count);
        return new SourceReport(name, fetched.Papers.Count + fetched.Skipped.Count, stored.New, stored.Updated, stored.Unchanged, skipped, null);
    }

    private IPaperSource CreateSource(string name, string? file) => name switch
    {
        HuggingFaceSource.SourceName => services.GetRequiredService<HuggingFaceSource>(),
        ArxivSource.SourceName => services.GetRequiredService<ArxivSource>(),
        FileSource.SourceName => new FileSource(file ?? options.Value.File.Path
            ?? throw new ArgumentException("the file source needs a file: --file PATH, or Papers:File:Path")),
        _ => throw new ArgumentException($"unknown source \"{name}\"; the sources are {string.Join(", ", PapersOptions.KnownSources)}"),
    };

    private static bool IsSourceFailure(Exception e) =>
        e is HttpRequestException or TimeoutRejectedException or BrokenCircuitException or SourceFormatException
            or IOException or UnauthorizedAccessException or ArgumentException or TaskCanceledException;

    private static string Describe(Exception e) => e switch
    {
        TimeoutRejectedException or TaskCanceledException => "the source did not answer in time",
        BrokenCircuitException => "the source kept failing, so calls to it are paused (circuit open)",
        HttpRequestException { StatusCode: null } http => $"could not connect: {http.Message}",
        _ => e.Message,
    };
}
