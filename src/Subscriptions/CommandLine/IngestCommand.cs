using System.CommandLine;
using Subscriptions.Papers;

namespace Subscriptions.CommandLine;

internal static class IngestCommand
{
    public static Command Create()
    {
        var date = Verbs.DateOption("The day whose papers to fetch (default: today, UTC).");
        var sources = new Option<string[]>("--source")
        {
            Description = $"A source to fetch from: {string.Join(", ", PapersOptions.KnownSources)}; repeat it or separate with commas (default: Papers:Sources).",
            HelpName = "SOURCE",
        };
        sources.Validators.Add(result =>
        {
            foreach (var unknown in Split(result.GetValueOrDefault<string[]>()).Except(PapersOptions.KnownSources, StringComparer.OrdinalIgnoreCase))
            {
                result.AddError($"--source {unknown}: the sources are {string.Join(", ", PapersOptions.KnownSources)}");
            }
        });
        var file = new Option<string>("--file") { Description = "The file the file source reads; alone, it means --source file.", HelpName = "PATH" };

        var command = new Command("ingest", "Fetch and store one day's papers, and print per source what was fetched, new, updated, unchanged and skipped.")
        {
            date, sources, file,
        };
        command.SetAction(async (result, cancellationToken) =>
        {
            var day = result.GetValue(date) ?? DateOnly.FromDateTime(DateTime.UtcNow);
            var path = result.GetValue(file);
            var names = Split(result.GetValue(sources));
            if (path is not null && names.Count == 0)
            {
                names = [FileSource.SourceName];
            }

            using var host = await CommandHost.StartAsync(Verbs.Settings(result), services => services.AddPapers());
            Console.WriteLine($"Ingesting the papers of {day:yyyy-MM-dd}");
            var reports = await host.Services.GetRequiredService<PaperIngest>().IngestAsync(day, names, path, cancellationToken);
            foreach (var report in reports)
            {
                Console.WriteLine(report);
                foreach (var reason in report.Skipped)
                {
                    Console.WriteLine($"    skipped {reason}");
                }
            }
            return reports.Any(report => report.Failed) ? Verbs.SourceFailed : Verbs.Done;
        });
        return command;
    }

    private static List<string> Split(string[]? values) =>
        [.. (values ?? []).SelectMany(value => value.Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries))];
}
