using System.CommandLine;
using Subscriptions.Meaning;

namespace Subscriptions.CommandLine;

/// <summary><c>embed [--all]</c>: after a change of model, makes the vectors of papers and topics that another model made.</summary>
internal static class EmbedCommand
{
    public static Command Create()
    {
        var all = new Option<bool>("--all") { Description = "Embed every paper and topic again, not only those without a vector of the current model." };
        var command = new Command("embed", "Embed the papers and subscribers' topics that have no vector of the configured model (Matching:ModelPath), and exit.")
        {
            all,
        };
        command.SetAction(async (result, cancellationToken) =>
        {
            using var host = await CommandHost.StartAsync(Verbs.Settings(result), services => services.AddMeaning());
            var embedder = host.Services.GetRequiredService<TextEmbedder>();
            if (!embedder.Enabled)
            {
                Console.Error.WriteLine("Meaning is off (Matching:Semantic=false): nothing to embed.");
                return Verbs.BadConfiguration;
            }
            var started = TimeProvider.System.GetTimestamp();
            var (papers, topics) = await host.Services.GetRequiredService<EmbeddingStore>().EmbedStaleAsync(result.GetValue(all), Console.WriteLine, cancellationToken);
            Console.WriteLine($"Embedded {papers:N0} paper(s) and {topics:N0} topic(s) with {embedder.ModelName} " +
                $"in {TimeProvider.System.GetElapsedTime(started).TotalSeconds:F1} s.");
            return Verbs.Done;
        });
        return command;
    }
}
