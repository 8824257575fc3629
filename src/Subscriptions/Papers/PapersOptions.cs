using System.ComponentModel.DataAnnotations;
using Subscriptions.Infrastructure;

namespace Subscriptions.Papers;

internal sealed class PapersOptions : IValidatableObject
{
    public const string Section = "Papers";
    public static readonly string[] KnownSources = ["huggingface", "arxiv", "file"];

    /// <summary>Comma-separated sources of the daily run.</summary>
    [Required(ErrorMessage = "is required")]
    public string Sources { get; set; } = "huggingface";

    public HuggingFaceSourceOptions HuggingFace { get; set; } = new();

    public ArxivSourceOptions Arxiv { get; set; } = new();

    public FileSourceOptions File { get; set; } = new();

    public PaperHttpOptions Http { get; set; } = new();

    public IReadOnlyList<string> SourceList => SplitList(Sources);

    public IEnumerable<ValidationResult> Validate(ValidationContext validationContext)
    {
        var unknown = SourceList.Where(source => !KnownSources.Contains(source, StringComparer.OrdinalIgnoreCase)).ToList();
        if (unknown.Count > 0 || SourceList.Count == 0)
        {
            yield return new ValidationResult(
                $"must list one or more of {string.Join(", ", KnownSources)}; \"{Sources}\" does not", [nameof(Sources)]);
        }
        if (SourceList.Contains(FileSource.SourceName, StringComparer.OrdinalIgnoreCase) && string.IsNullOrWhiteSpace(File.Path))
        {
            yield return new ValidationResult($"is required when {nameof(Sources)} lists {FileSource.SourceName}: the file its daily run reads", ["File:Path"]);
        }
        // "host:8080/api" is an absolute URL too, of the scheme "host": every fetch would fail, not the start.
        var httpUrl = new HttpUrlAttribute();
        if (!httpUrl.IsValid(HuggingFace.BaseUrl))
        {
            yield return new ValidationResult(httpUrl.FormatErrorMessage(""), ["HuggingFace:BaseUrl"]);
        }
        if (!httpUrl.IsValid(Arxiv.BaseUrl))
        {
            yield return new ValidationResult(httpUrl.FormatErrorMessage(""), ["Arxiv:BaseUrl"]);
        }
        if (Arxiv.CategoryList.Count == 0)
        {
            yield return new ValidationResult("must name at least one category, e.g. \"cs.CL, cs.LG\"", ["Arxiv:Categories"]);
        }
        foreach (var (value, low, high, key) in new (int, int, int, string)[]
        {
            (HuggingFace.PageSize, 1, 1000, "HuggingFace:PageSize"),
            (HuggingFace.MaxPages, 1, 100, "HuggingFace:MaxPages"),
            (Arxiv.PageSize, 1, 2000, "Arxiv:PageSize"),
            (Arxiv.MaxResults, 1, 30000, "Arxiv:MaxResults"),
            (Http.Retries, 0, 10, "Http:Retries"),
        })
        {
            if (value < low || value > high)
            {
                yield return new ValidationResult($"must be between {low} and {high}", [key]);
            }
        }
        // Each named by its own key, and bounded: a bare number is days to .NET's configuration ("3" for a 3 s interval made
        // arXiv "not answer in time" at every call, and a 30-day timeout failed the resilience library's own check, which
        // named its settings rather than ours).
        foreach (var (value, low, high, key) in new (TimeSpan, TimeSpan, TimeSpan, string)[]
        {
            (Http.Timeout, TimeSpan.FromMilliseconds(10), TimeSpan.FromMinutes(10), "Http:Timeout"),
            (Http.RetryDelay, TimeSpan.Zero, TimeSpan.FromMinutes(10), "Http:RetryDelay"),
            (Arxiv.RequestInterval, TimeSpan.Zero, TimeSpan.FromMinutes(1), "Arxiv:RequestInterval"),
        })
        {
            if (value < low || value > high)
            {
                yield return new ValidationResult($"must be between {low} and {high}", [key]);
            }
        }
        // Each attempt waits its turn inside its own timeout (a retry of a throttled source is throttled too).
        if (SourceList.Contains(ArxivSource.SourceName, StringComparer.OrdinalIgnoreCase) && Arxiv.RequestInterval * 2 > Http.Timeout)
        {
            yield return new ValidationResult(
                $"must be at most half of Papers:Http:Timeout ({Http.Timeout}): a request's wait for its turn counts in its timeout",
                ["Arxiv:RequestInterval"]);
        }
    }

    internal static IReadOnlyList<string> SplitList(string? value) =>
        (value ?? "").Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries);
}

internal sealed class HuggingFaceSourceOptions
{
    public string BaseUrl { get; set; } = "https://huggingface.co";

    /// <summary>Papers asked for per request (<c>limit</c>), and how many pages (<c>p</c>) at most.</summary>
    public int PageSize { get; set; } = 100;

    public int MaxPages { get; set; } = 10;
}

internal sealed class FileSourceOptions
{
    /// <summary>The file the <c>file</c> source reads when the daily run uses it.</summary>
    public string? Path { get; set; }
}

internal sealed class PaperHttpOptions
{
    /// <summary>Longest wait for one HTTP request to a paper source.</summary>
    public TimeSpan Timeout { get; set; } = TimeSpan.FromSeconds(30);

    /// <summary>Retries of a failed request (5xx, 408, 429, connection failure, timeout), exponential with jitter.</summary>
    public int Retries { get; set; } = 3;

    public TimeSpan RetryDelay { get; set; } = TimeSpan.FromSeconds(2);
}

internal sealed class ArxivSourceOptions
{
    public string BaseUrl { get; set; } = "https://export.arxiv.org/api/query";

    /// <summary>Comma-separated arXiv categories to follow.</summary>
    public string Categories { get; set; } = "cs.CL, cs.CV, cs.LG";

    public IReadOnlyList<string> CategoryList => PapersOptions.SplitList(Categories);

    public int PageSize { get; set; } = 100;

    /// <summary>The most papers taken from arXiv for one day.</summary>
    public int MaxResults { get; set; } = 500;

    /// <summary>arXiv asks API clients to leave 3 seconds between calls.</summary>
    public TimeSpan RequestInterval { get; set; } = TimeSpan.FromSeconds(3);
}
