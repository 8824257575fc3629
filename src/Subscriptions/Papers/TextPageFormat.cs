namespace Subscriptions.Papers;

/// <summary>
/// A papers page saved as plain text: each paper is a title line followed by its abstract line.
/// The page's own furniture (the "Get trending papers in your email inbox" banner and the
/// "Subscribe" button run into the first title) is left out.
/// </summary>
internal static class TextPageFormat
{
    private const int LongestTitle = 400;
    private static readonly string[] Banners = ["Get trending papers in your email inbox"];

    public static ParsedPapers Parse(string text)
    {
        var lines = text.Split('\n')
            .Select(line => line.Trim())
            .Where(line => line.Length > 0 && !Banners.Any(banner => line.StartsWith(banner, StringComparison.OrdinalIgnoreCase)))
            .Select(StripSubscribeButton)
            .ToList();

        var papers = new List<PaperRecord>();
        var skipped = new List<string>();
        var i = 0;
        while (i < lines.Count)
        {
            var title = lines[i];
            var abstractLine = i + 1 < lines.Count ? lines[i + 1] : null;
            // A title is short; what follows it is its abstract. A line that fits neither is skipped alone,
            // so one stray line does not shift every later paper out of step.
            if (title.Length > LongestTitle || abstractLine is null || abstractLine.Length <= LongestTitle && abstractLine.Length < title.Length)
            {
                skipped.Add($"line \"{Shorten(title)}\": not a title followed by an abstract");
                i++;
                continue;
            }
            try
            {
                papers.Add(PaperRecord.Create(arxivId: null, title, abstractLine, authors: null, publishedAt: null, upvotes: null));
            }
            catch (MalformedPaperException e)
            {
                skipped.Add($"\"{Shorten(title)}\": {e.Message}");
            }
            i += 2;
        }
        return new ParsedPapers(papers, skipped);
    }

    private static string StripSubscribeButton(string line) =>
        line.StartsWith("Subscribe", StringComparison.Ordinal) && line.Length > "Subscribe".Length && char.IsUpper(line["Subscribe".Length])
            ? line["Subscribe".Length..]
            : line;

    private static string Shorten(string text) => text.Length <= 60 ? text : text[..60] + "…";
}
