using System.Net;
using System.Security.Cryptography;
using System.Text;
using System.Text.RegularExpressions;
using Subscriptions.Infrastructure;

namespace Subscriptions.Papers;

/// <summary>One paper as a source listed it on a day, cleaned up and checked.</summary>
internal sealed partial record PaperRecord(
    string Key,
    string? ArxivId,
    string Title,
    string Abstract,
    IReadOnlyList<string> Authors,
    DateTimeOffset? PublishedAt,
    int? Upvotes,
    string? PageUrl,
    string? PdfUrl,
    string? GithubRepo,
    string? ProjectPage)
{
    public const int MaxTitleLength = 1000;
    public const int MaxAbstractLength = 20_000;
    public const int MaxAuthors = 2000;
    public const int MaxAuthorLength = 300;
    public const int MaxUrlLength = 2000;
    public const int MaxCategories = 50;

    /// <summary>arXiv categories (<c>cs.CL</c>), where the source gives them.</summary>
    public IReadOnlyList<string> Categories { get; init; } = [];

    /// <summary>
    /// Builds a record from raw source fields, or says why it cannot: a paper needs an arXiv id or a
    /// title, and nothing absurdly large is let in.
    /// </summary>
    public static PaperRecord Create(
        string? arxivId, string? title, string? abstractText, IEnumerable<string?>? authors, DateTimeOffset? publishedAt, int? upvotes,
        string? pageUrl = null, string? pdfUrl = null, string? githubRepo = null, string? projectPage = null,
        IEnumerable<string?>? categories = null)
    {
        // Sizes are checked before any work is done on the text.
        if (title?.Length > MaxTitleLength * 4)
        {
            throw new MalformedPaperException($"title is {title.Length:N0} characters long");
        }
        if (abstractText?.Length > MaxAbstractLength * 2)
        {
            throw new MalformedPaperException($"abstract is {abstractText.Length:N0} characters long");
        }

        var id = NormalizeArxivId(arxivId);
        if (arxivId is not null && !string.IsNullOrWhiteSpace(arxivId) && id is null)
        {
            throw new MalformedPaperException($"\"{Shorten(arxivId)}\" is not an arXiv id");
        }
        var cleanTitle = NormalizeText(title);
        if (cleanTitle.Length == 0)
        {
            throw new MalformedPaperException(id is null ? "it has neither an arXiv id nor a title" : $"{id} has no title");
        }
        if (cleanTitle.Length > MaxTitleLength)
        {
            throw new MalformedPaperException($"title is {cleanTitle.Length:N0} characters long");
        }
        var cleanAbstract = NormalizeText(abstractText);
        if (cleanAbstract.Length > MaxAbstractLength)
        {
            throw new MalformedPaperException($"abstract is {cleanAbstract.Length:N0} characters long");
        }
        var authorList = (authors ?? []).Select(NormalizeText).Where(name => name.Length > 0).ToList();
        if (authorList.Count > MaxAuthors || authorList.Any(name => name.Length > MaxAuthorLength))
        {
            throw new MalformedPaperException("its author list is too large");
        }
        if (upvotes < 0)
        {
            throw new MalformedPaperException($"upvotes is {upvotes}");
        }

        var key = id is not null ? $"arxiv:{id}" : $"title:{TitleHash(cleanTitle)}";
        return new PaperRecord(
            key, id, cleanTitle, cleanAbstract, authorList, publishedAt, upvotes,
            Url(pageUrl) ?? (id is null ? null : $"https://arxiv.org/abs/{id}"),
            Url(pdfUrl) ?? (id is null ? null : $"https://arxiv.org/pdf/{id}"),
            Url(githubRepo), Url(projectPage))
        {
            Categories = [.. (categories ?? []).Select(NormalizeText).Where(term => term.Length is > 0 and <= 40).Distinct().Take(MaxCategories)],
        };
    }

    /// <summary>
    /// Whitespace collapsed, HTML entities decoded, and the characters no text of ours can hold left out; LaTeX and
    /// everything else left as written.
    /// </summary>
    public static string NormalizeText(string? text)
    {
        if (string.IsNullOrEmpty(text))
        {
            return "";
        }
        var decoded = text.Contains('&', StringComparison.Ordinal) ? WebUtility.HtmlDecode(text) : text;
        return Whitespace().Replace(XmlChars.WithoutInvalidCharacters(decoded), " ").Trim();
    }

    /// <summary>
    /// <c>2411.12345</c> from <c>2411.12345v2</c>, <c>arXiv:2411.12345</c> or an abs/pdf URL; old-style ids
    /// (<c>hep-th/9901001</c>) too. Null when there is nothing that looks like an id.
    /// </summary>
    public static string? NormalizeArxivId(string? text)
    {
        if (string.IsNullOrWhiteSpace(text) || text.Length > 200)
        {
            return null;
        }
        var match = ArxivIdPattern().Match(text.Trim());
        return match.Success ? match.Groups["id"].Value : null;
    }

    private static string TitleHash(string title) =>
        Convert.ToHexStringLower(SHA256.HashData(Encoding.UTF8.GetBytes(title.ToLowerInvariant())))[..32];

    private static string? Url(string? text) =>
        !string.IsNullOrWhiteSpace(text) && text.Length <= MaxUrlLength && Uri.TryCreate(text.Trim(), UriKind.Absolute, out var uri)
            && (uri.Scheme == Uri.UriSchemeHttps || uri.Scheme == Uri.UriSchemeHttp)
            ? uri.AbsoluteUri
            : null;

    // Quoted in the ingest's summary: without the control characters (C0 and C1) an operator's terminal would obey.
    private static string Shorten(string text)
    {
        var shown = string.Concat(text.Where(c => !char.IsControl(c)));
        return shown.Length <= 40 ? shown : shown[..40] + "…";
    }

    [GeneratedRegex(@"\s+")]
    private static partial Regex Whitespace();

    [GeneratedRegex(@"^(?:arxiv:|https?://(?:export\.)?arxiv\.org/(?:abs|pdf)/)?(?<id>\d{4}\.\d{4,5}|[a-z][a-z\-]*(?:\.[A-Z]{2})?/\d{7})(?:v\d+)?(?:\.pdf)?$", RegexOptions.IgnoreCase)]
    private static partial Regex ArxivIdPattern();
}

/// <summary>A record that cannot be stored; the batch it came in goes on without it.</summary>
internal sealed class MalformedPaperException(string reason) : Exception(reason);
