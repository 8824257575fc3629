using System.Globalization;

namespace Subscriptions.Digest;

/// <summary>The options of the <c>digest</c> verb; anything else is left for configuration (<c>--Key=Value</c>).</summary>
internal sealed record DigestArguments(DateOnly? Day, bool DryRun, bool NoIngest, string[] Rest)
{
    public static DigestArguments? Parse(string[] args)
    {
        DateOnly? day = null;
        bool dryRun = false, noIngest = false;
        var rest = new List<string>();
        for (var i = 0; i < args.Length; i++)
        {
            var argument = args[i];
            if (argument == "--dry-run")
            {
                dryRun = true;
            }
            else if (argument == "--no-ingest")
            {
                noIngest = true;
            }
            else if (argument == "--date" || argument.StartsWith("--date=", StringComparison.Ordinal))
            {
                var value = argument == "--date" ? (i + 1 < args.Length ? args[++i] : "") : argument["--date=".Length..];
                if (!DateOnly.TryParseExact(value, "yyyy-MM-dd", CultureInfo.InvariantCulture, DateTimeStyles.None, out var parsed))
                {
                    Console.Error.WriteLine($"--date {value}: expected a day as YYYY-MM-DD");
                    return null;
                }
                day = parsed;
            }
            else
            {
                rest.Add(argument);
            }
        }
        return new DigestArguments(day, dryRun, noIngest, [.. rest]);
    }
}
