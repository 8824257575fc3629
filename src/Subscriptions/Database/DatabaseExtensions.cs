using Microsoft.Extensions.Options;
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
        {
            var connectionString = provider.GetRequiredService<IOptions<DatabaseOptions>>().Value.Postgres;
            dataSource.ConnectionStringBuilder.ConnectionString = connectionString;
            if (!DatabaseOptions.SetsPoolSize(connectionString))
            {
                dataSource.ConnectionStringBuilder.MaxPoolSize = DatabaseOptions.DefaultMaxPoolSize;
            }
            if (!DatabaseOptions.SetsAutoPrepare(connectionString))
            {
                dataSource.ConnectionStringBuilder.MaxAutoPrepare = DatabaseOptions.DefaultMaxAutoPrepare;
            }
        });
        services.AddSingleton<MigrationRunner>();
        // Npgsql logs every command at Information; what an operator needs from it are its warnings and errors.
        services.AddLogging(logging => logging.AddFilter("Npgsql", LogLevel.Warning));
    });

    /// <summary>Applies pending migrations before the other background services start.</summary>
    public static IServiceCollection AddMigrationsAtStartup(this IServiceCollection services) =>
        services.AddHostedService<MigrateAtStartup>();

    private sealed class MigrateAtStartup(MigrationRunner runner, ILogger<MigrateAtStartup> logger) : IHostedService
    {
        public async Task StartAsync(CancellationToken cancellationToken)
        {
            var applied = await runner.ApplyPendingAsync(cancellationToken);
            logger.LogInformation("Database schema is current ({Applied} migration(s) applied now)", applied.Count);
        }

        public Task StopAsync(CancellationToken cancellationToken) => Task.CompletedTask;
    }
}
