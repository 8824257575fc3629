using System.CommandLine;

namespace Subscriptions.CommandLine;

internal static class MigrateCommand
{
    public static Command Create()
    {
        var command = new Command("migrate", "Apply pending sql/ migrations and exit.");
        command.SetAction(async result =>
        {
            using var host = await CommandHost.StartAsync(Verbs.Settings(result), _ => { });
            Console.WriteLine(host.Applied.Count == 0
                ? "The database schema is current; nothing to apply."
                : $"Applied {host.Applied.Count} migration(s): {string.Join(", ", host.Applied)}");
            return Verbs.Done;
        });
        return command;
    }
}
