using System.Globalization;

namespace Subscriptions.Papers;

/// <summary>The options of the <c>ingest</c> verb; anything else is left for configuration (<c>--Key=Value</c>).</summary>
internal sealed record IngestArguments(DateOnly? Day, IReadOnlyList<string> Sources, string? File, string[] Rest)
{
    public static IngestArguments? Parse(string[] args)
    {
        DateOnly? day = null;
        var sources = new List<string>();
        string? file = null;
        var rest = new List<string>();
        for (var i = 0; i < args.Length; i++)
        {
            var (name, inlineValue) = args[i].Split('=', 2) is [var n, var v] ? (n, v) : (args[i], null);
            if (name is not ("--date" or "--source" or "--file"))
            {
                rest.Add(args[i]);
                continue;
            }
            var value = inlineValue ?? (i + 1 < args.Length ? args[++i] : null);
            if (value is null)
            {
                Console.Error.WriteLine($"{name} needs a value");
                return null;
            }
            switch (name)
            {
                case "--date" when DateOnly.TryParseExact(value, "yyyy-MM-dd", CultureInfo.InvariantCulture, DateTimeStyles.None, out var parsed):
                    day = parsed;
                    break;
                case "--date":
                    Console.Error.WriteLine($"--date {value}: expected a day as YYYY-MM-DD");
                    return null;
                case "--source":
                    sources.AddRange(value.Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries));
                    break;
                default:
                    file = value;
                    break;
            }
        }
        if (file is not null && sources.Count == 0)
        {
            sources.Add(FileSource.SourceName);
        }
        return new IngestArguments(day, sources, file, [.. rest]);
    }
}
