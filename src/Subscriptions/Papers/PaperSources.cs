using System.Diagnostics;
using System.Globalization;
using System.Text;
using Microsoft.Extensions.Options;

namespace Subscriptions.Papers;

/// <summary>Where a day's papers come from. Each returns them in that source's trending order.</summary>
internal interface IPaperSource
{
    string Name { get; }

    Task<ParsedPapers> FetchAsync(DateOnly day, CancellationToken cancellationToken);
}

/// <summary>Hugging Face daily papers: <c>GET /api/daily_papers?date=YYYY-MM-DD&amp;limit=N&amp;p=PAGE</c>.</summary>
internal sealed class HuggingFaceSource(HttpClient http, IOptions<PapersOptions> options) : IPaperSource
{
    public const string SourceName = "huggingface";

    public string Name => SourceName;

    public async Task<ParsedPapers> FetchAsync(DateOnly day, CancellationToken cancellationToken)
    {
        var settings = options.Value.HuggingFace;
        var papers = new List<PaperRecord>();
        var skipped = new List<string>();
        for (var page = 0; page < settings.MaxPages; page++)
        {
            var url = $"{settings.BaseUrl.TrimEnd('/')}/api/daily_papers?date={day:yyyy-MM-dd}&limit={settings.PageSize}&p={page}";
            var body = await PaperHttp.GetBytesAsync(http, url, cancellationToken);
            var parsed = HuggingFaceFormat.Parse(body);
            papers.AddRange(parsed.Papers);
            skipped.AddRange(parsed.Skipped.Select(reason => page == 0 ? reason : $"page {page + 1}, {reason}"));
            if (parsed.Papers.Count + parsed.Skipped.Count < settings.PageSize)
            {
                break;
            }
        }
        return new ParsedPapers(HuggingFaceFormat.InTrendingOrder(papers), skipped);
    }
}

/// <summary>
/// The newest arXiv submissions in <c>Papers:Arxiv:Categories</c> on the day, from the arXiv API's
/// Atom feed, newest first. Calls are spaced by <c>Papers:Arxiv:RequestInterval</c> (see <see cref="ArxivThrottle"/>).
/// </summary>
internal sealed class ArxivSource(HttpClient http, IOptions<PapersOptions> options) : IPaperSource
{
    public const string SourceName = "arxiv";

    public string Name => SourceName;

    public async Task<ParsedPapers> FetchAsync(DateOnly day, CancellationToken cancellationToken)
    {
        var settings = options.Value.Arxiv;
        var categories = string.Join(" OR ", settings.CategoryList.Select(category => $"cat:{category}"));
        var query = $"({categories}) AND submittedDate:[{day:yyyyMMdd}0000 TO {day:yyyyMMdd}2359]";
        var papers = new List<PaperRecord>();
        var skipped = new List<string>();
        for (var start = 0; start < settings.MaxResults;)
        {
            var size = Math.Min(settings.PageSize, settings.MaxResults - start);
            var url = $"{settings.BaseUrl}?search_query={Uri.EscapeDataString(query)}&sortBy=submittedDate&sortOrder=descending" +
                $"&start={start.ToString(CultureInfo.InvariantCulture)}&max_results={size.ToString(CultureInfo.InvariantCulture)}";
            var body = await PaperHttp.GetBytesAsync(http, url, cancellationToken);
            var (page, total) = ArxivFormat.Parse(new MemoryStream(body));
            papers.AddRange(page.Papers);
            skipped.AddRange(page.Skipped);
            var received = page.Papers.Count + page.Skipped.Count;
            start += received;
            if (received == 0 || start >= total)
            {
                break;
            }
        }
        return new ParsedPapers(papers, skipped);
    }
}

/// <summary>
/// A file: the Hugging Face JSON format, or a plain-text page where each paper is a title line and
/// an abstract line. How the service runs offline.
/// </summary>
internal sealed class FileSource(string path) : IPaperSource
{
    public const string SourceName = "file";
    private const long LargestFile = 64 * 1024 * 1024;

    public string Name => SourceName;

    public async Task<ParsedPapers> FetchAsync(DateOnly day, CancellationToken cancellationToken)
    {
        var file = new FileInfo(path);
        if (!file.Exists)
        {
            throw new FileNotFoundException($"{path} does not exist", path);
        }
        if (file.Length > LargestFile)
        {
            throw new SourceFormatException($"{path} is {file.Length:N0} bytes; the largest file taken is {LargestFile:N0}");
        }
        var bytes = await File.ReadAllBytesAsync(path, cancellationToken);
        var text = Encoding.UTF8.GetString(bytes).TrimStart('\uFEFF');
        var firstCharacter = text.FirstOrDefault(c => !char.IsWhiteSpace(c));
        if (firstCharacter is '[' or '{')
        {
            var parsed = HuggingFaceFormat.Parse(Encoding.UTF8.GetBytes(text));
            return parsed with { Papers = HuggingFaceFormat.InTrendingOrder(parsed.Papers) };
        }
        return TextPageFormat.Parse(text);
    }
}

internal static class PaperHttp
{
    /// <summary>The body of a successful response; any other status is an error naming it and the URL.</summary>
    public static async Task<byte[]> GetBytesAsync(HttpClient http, string url, CancellationToken cancellationToken)
    {
        using var response = await http.GetAsync(url, HttpCompletionOption.ResponseContentRead, cancellationToken);
        if (!response.IsSuccessStatusCode)
        {
            throw new HttpRequestException(
                $"{(int)response.StatusCode} {response.ReasonPhrase} from {url}", inner: null, response.StatusCode);
        }
        return await response.Content.ReadAsByteArrayAsync(cancellationToken);
    }
}

/// <summary>
/// Keeps calls to arXiv at least <c>Papers:Arxiv:RequestInterval</c> apart, retries included: each call
/// waits until that long after the previous one finished, so arXiv sees the pause whatever the latency.
/// </summary>
internal sealed class ArxivThrottle(IOptions<PapersOptions> options)
{
    private readonly SemaphoreSlim _gate = new(1, 1);
    private long? _lastCallEnded;

    private TimeSpan Interval => options.Value.Arxiv.RequestInterval;

    public sealed class Handler(ArxivThrottle throttle) : DelegatingHandler
    {
        protected override async Task<HttpResponseMessage> SendAsync(HttpRequestMessage request, CancellationToken cancellationToken)
        {
            await throttle._gate.WaitAsync(cancellationToken);
            try
            {
                if (throttle._lastCallEnded is { } last
                    && throttle.Interval - Stopwatch.GetElapsedTime(last) is var wait && wait > TimeSpan.Zero)
                {
                    await Task.Delay(wait, cancellationToken);
                }
                return await base.SendAsync(request, cancellationToken);
            }
            finally
            {
                throttle._lastCallEnded = Stopwatch.GetTimestamp();
                throttle._gate.Release();
            }
        }
    }
}
