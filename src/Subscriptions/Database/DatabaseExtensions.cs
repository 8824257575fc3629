using Microsoft.Extensions.Options;
using Npgsql;
using Subscriptions.Infrastructure;

namespace Subscriptions.Database;

internal static class DatabaseExtensions
{
    /// <summary>One <see cref="Npgsql.NpgsqlDataSource"/> for the app (logging through the host's logger factory) and the migration runner.</summary>
    public static IServiceCollection AddDatabase(this IServiceCollection services) => services.AddFeature("database", services =>
    {
        // Columns are snake_case, C# members PascalCase.
        Dapper.DefaultTypeMap.MatchNamesWithUnderscores = true;
        services.AddSection<DatabaseOptions>(DatabaseOptions.Section);
        // The connection string comes from the validated options, read when the data source is first needed.
        services.AddNpgsqlDataSource("", (provider, dataSource) =>
            DatabaseOptions.Configure(dataSource, provider.GetRequiredService<IOptions<DatabaseOptions>>().Value.Postgres));
        services.AddSingleton<MigrationRunner>();
        // Npgsql logs every command at Information; what an operator needs from it are its warnings and errors.
        services.AddLogging(logging => logging.AddFilter("Npgsql", LogLevel.Warning));
    });

    /// <summary>
    /// Applies pending migrations before a host runs. SIGTERM or Ctrl+C meanwhile (the host handles them only once it runs)
    /// cancels the wait for another instance's migrations, or the script being applied, which rolls back: then
    /// <see cref="StoppedWhileMigratingException"/>. Without this, a stop while another instance migrated was an
    /// "unexpected error" with two stack traces, and a verb waiting on the lock could not be stopped at all.
    /// </summary>
    public static async Task<IReadOnlyList<string>> MigrateAsync(this IServiceProvider services)
    {
        var stop = new StopSignals();
        IReadOnlyList<string> applied;
        using (stop)
        {
            try
            {
                applied = await services.GetRequiredService<MigrationRunner>().ApplyPendingAsync(stop.Token);
            }
            catch (Exception e) when (stop.IsStopping && e is OperationCanceledException or NpgsqlException)
            {
                throw new StoppedWhileMigratingException(e);
            }
        }
        // A signal that came as the last migration committed was taken from the default handling: it still stops.
        return stop.IsStopping ? throw new StoppedWhileMigratingException(null) : applied;
    }
}

/// <summary>SIGTERM or Ctrl+C came while migrating: nothing was half applied, and nothing else was started.</summary>
internal sealed class StoppedWhileMigratingException(Exception? inner)
    : OperationCanceledException("Stopped while migrating the database, before anything else started; no migration was left half applied.", inner);
