using System.Globalization;
using System.Xml;
using System.Xml.Linq;

namespace Subscriptions.Papers;

/// <summary>The Atom feed of the arXiv API (<c>export.arxiv.org/api/query</c>).</summary>
internal static class ArxivFormat
{
    private static readonly XNamespace Atom = "http://www.w3.org/2005/Atom";
    private static readonly XNamespace OpenSearch = "http://a9.com/-/spec/opensearch/1.1/";

    /// <summary>The papers of one page, and how many results the query has in all.</summary>
    public static (ParsedPapers Page, int TotalResults) Parse(Stream atom)
    {
        XDocument feed;
        try
        {
            using var reader = XmlReader.Create(atom, new XmlReaderSettings { DtdProcessing = DtdProcessing.Prohibit, XmlResolver = null });
            feed = XDocument.Load(reader);
        }
        catch (XmlException e)
        {
            throw new SourceFormatException($"the response is not XML ({e.Message})", e);
        }

        if (feed.Root?.Name != Atom + "feed")
        {
            throw new SourceFormatException($"expected an Atom feed, got <{feed.Root?.Name.LocalName}>");
        }
        var entries = feed.Root.Elements(Atom + "entry").ToList();
        // The API reports a bad query as a feed whose one entry is the error.
        if (entries is [var only] && ((string?)only.Element(Atom + "id"))?.Contains("/api/errors", StringComparison.Ordinal) == true)
        {
            throw new SourceFormatException($"arXiv refused the query: {PaperRecord.NormalizeText((string?)only.Element(Atom + "summary"))}");
        }

        var papers = new List<PaperRecord>();
        var skipped = new List<string>();
        var position = 0;
        foreach (var entry in entries)
        {
            position++;
            var id = (string?)entry.Element(Atom + "id");
            try
            {
                papers.Add(PaperRecord.Create(
                    id,
                    (string?)entry.Element(Atom + "title"),
                    (string?)entry.Element(Atom + "summary"),
                    entry.Elements(Atom + "author").Select(author => (string?)author.Element(Atom + "name")),
                    Timestamp((string?)entry.Element(Atom + "published")),
                    upvotes: null,
                    pageUrl: Link(entry, link => (string?)link.Attribute("rel") == "alternate"),
                    pdfUrl: Link(entry, link => (string?)link.Attribute("title") == "pdf"),
                    categories: entry.Elements(Atom + "category").Select(category => (string?)category.Attribute("term"))));
            }
            catch (MalformedPaperException e)
            {
                skipped.Add($"entry {position}{(string.IsNullOrEmpty(id) ? "" : $" ({id})")}: {e.Message}");
            }
        }

        var total = int.TryParse((string?)feed.Root.Element(OpenSearch + "totalResults"), NumberStyles.None, CultureInfo.InvariantCulture, out var count)
            ? count
            : entries.Count;
        return (new ParsedPapers(papers, skipped), total);
    }

    private static string? Link(XElement entry, Func<XElement, bool> which) =>
        (string?)entry.Elements(Atom + "link").FirstOrDefault(which)?.Attribute("href");

    private static DateTimeOffset? Timestamp(string? text) =>
        text is null ? null
        : DateTimeOffset.TryParse(text, CultureInfo.InvariantCulture, DateTimeStyles.AssumeUniversal, out var value) ? value
        : throw new MalformedPaperException($"\"{text}\" is not a date");
}
