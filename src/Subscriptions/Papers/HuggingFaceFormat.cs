using System.Globalization;
using System.Text.Json;

namespace Subscriptions.Papers;

/// <summary>What one response or file held: the papers that passed, and a line for each that did not.</summary>
internal sealed record ParsedPapers(IReadOnlyList<PaperRecord> Papers, IReadOnlyList<string> Skipped)
{
    public static ParsedPapers Empty { get; } = new([], []);
}

/// <summary>A response that is not what the source sends at all (not JSON, not Atom): the whole fetch fails.</summary>
internal sealed class SourceFormatException(string message, Exception? inner = null) : Exception(message, inner);

/// <summary>
/// The JSON of Hugging Face's <c>/api/daily_papers</c>: an array of items, each with a <c>paper</c>
/// object (<c>id</c> = arXiv id, <c>title</c>, <c>summary</c>, <c>authors[].name</c>, <c>upvotes</c>,
/// <c>publishedAt</c>, <c>githubRepo</c>, <c>projectPage</c>, …) and item-level <c>title</c>,
/// <c>summary</c>, <c>publishedAt</c>, <c>numComments</c>, <c>submittedBy</c>, … Unknown fields are ignored.
/// </summary>
internal static class HuggingFaceFormat
{
    /// <summary>The day's trending order is by upvotes; the listing's own order breaks ties (the sort is stable).</summary>
    public static List<PaperRecord> InTrendingOrder(IEnumerable<PaperRecord> papers) =>
        [.. papers.OrderByDescending(paper => paper.Upvotes ?? 0)];

    public static ParsedPapers Parse(ReadOnlyMemory<byte> json)
    {
        JsonDocument document;
        try
        {
            document = JsonDocument.Parse(json, new JsonDocumentOptions { MaxDepth = 64 });
        }
        catch (JsonException e)
        {
            throw new SourceFormatException($"the response is not JSON ({e.Message})", e);
        }

        using (document)
        {
            if (document.RootElement.ValueKind != JsonValueKind.Array)
            {
                throw new SourceFormatException($"expected a JSON array of daily papers, got a JSON {document.RootElement.ValueKind.ToString().ToLowerInvariant()}");
            }

            var papers = new List<PaperRecord>();
            var skipped = new List<string>();
            var position = 0;
            foreach (var item in document.RootElement.EnumerateArray())
            {
                position++;
                try
                {
                    papers.Add(ParseItem(item));
                }
                catch (MalformedPaperException e)
                {
                    skipped.Add($"item {position}{Describe(item)}: {e.Message}");
                }
            }
            return new ParsedPapers(papers, skipped);
        }
    }

    private static PaperRecord ParseItem(JsonElement item)
    {
        if (item.ValueKind != JsonValueKind.Object)
        {
            throw new MalformedPaperException($"expected an object, got {Kind(item)}");
        }
        var paper = item.TryGetProperty("paper", out var inner) && inner.ValueKind != JsonValueKind.Null ? inner : (JsonElement?)null;
        if (paper is { ValueKind: not JsonValueKind.Object })
        {
            throw new MalformedPaperException($"\"paper\" is {Kind(paper.Value)}, not an object");
        }

        // The paper object is the source of truth; the item repeats some fields, used when the paper lacks them.
        var fields = paper ?? item;
        var id = String(fields, "id");
        return PaperRecord.Create(
            id,
            String(fields, "title") ?? String(item, "title"),
            String(fields, "summary") ?? String(item, "summary"),
            Authors(fields),
            Timestamp(String(fields, "publishedAt") ?? String(item, "publishedAt")),
            Integer(fields, "upvotes") ?? Integer(item, "upvotes"),
            pageUrl: PaperRecord.NormalizeArxivId(id) is { } arxivId ? $"https://huggingface.co/papers/{arxivId}" : null,
            githubRepo: String(fields, "githubRepo"),
            projectPage: String(fields, "projectPage"));
    }

    private static List<string?> Authors(JsonElement owner)
    {
        if (!owner.TryGetProperty("authors", out var authors) || authors.ValueKind == JsonValueKind.Null)
        {
            return [];
        }
        if (authors.ValueKind != JsonValueKind.Array)
        {
            throw new MalformedPaperException($"\"authors\" is {Kind(authors)}, not an array");
        }
        // Authors without a linked account, or hidden ones, still carry a name; anything else is left out.
        return [.. authors.EnumerateArray().Select(author => author.ValueKind switch
        {
            JsonValueKind.Object when author.TryGetProperty("name", out var name) && name.ValueKind == JsonValueKind.String => Text(name, "an author's name"),
            JsonValueKind.String => Text(author, "an author"),
            _ => null,
        })];
    }

    private static string? String(JsonElement owner, string name) =>
        !owner.TryGetProperty(name, out var value) ? null : value.ValueKind switch
        {
            JsonValueKind.String => Text(value, $"\"{name}\""),
            JsonValueKind.Null => null,
            _ => throw new MalformedPaperException($"\"{name}\" is {Kind(value)}, not a string"),
        };

    private static int? Integer(JsonElement owner, string name) =>
        !owner.TryGetProperty(name, out var value) ? null : value.ValueKind switch
        {
            JsonValueKind.Number when value.TryGetInt32(out var number) => number,
            JsonValueKind.Null => null,
            _ => throw new MalformedPaperException($"\"{name}\" is {Kind(value)}, not a whole number"),
        };

    private static DateTimeOffset? Timestamp(string? text) =>
        text is null ? null
        : DateTimeOffset.TryParse(text, CultureInfo.InvariantCulture, DateTimeStyles.AssumeUniversal, out var value) ? value
        : throw new MalformedPaperException($"\"{(text.Length > 40 ? text[..40] : text)}\" is not a date");

    private static string Kind(JsonElement value) => value.ValueKind switch
    {
        JsonValueKind.Array => "an array",
        JsonValueKind.Object => "an object",
        JsonValueKind.Number => $"the number {value.GetRawText()}",
        JsonValueKind.String => "a string",
        JsonValueKind.True or JsonValueKind.False => "a boolean",
        _ => "null",
    };

    // Names the item in warnings by whatever identifies it, when that can be read (as text, without control characters an
    // operator's terminal would obey).
    private static string Describe(JsonElement item)
    {
        if (item.ValueKind != JsonValueKind.Object)
        {
            return "";
        }
        var source = item.TryGetProperty("paper", out var paper) && paper.ValueKind == JsonValueKind.Object ? paper : item;
        foreach (var name in new[] { "id", "title" })
        {
            if (source.TryGetProperty(name, out var value) && value.ValueKind == JsonValueKind.String
                && TryGetString(value) is { } raw && PaperRecord.NormalizeText(raw) is { Length: > 0 } text)
            {
                return $" ({(text.Length > 60 ? text[..60] + "…" : text)})";
            }
        }
        return "";
    }

    /// <summary>A JSON string as text; JSON lets one escape half a surrogate pair ("\ud800"), which is no text .NET can read.</summary>
    private static string Text(JsonElement value, string what) =>
        TryGetString(value) ?? throw new MalformedPaperException($"{what} holds half a surrogate pair, which is not text");

    private static string? TryGetString(JsonElement value)
    {
        try
        {
            return value.GetString();
        }
        catch (InvalidOperationException)
        {
            return null;
        }
    }
}
