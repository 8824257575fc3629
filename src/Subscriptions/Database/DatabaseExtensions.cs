using Dapper;
using Microsoft.Extensions.Options;
using Npgsql;
using Subscriptions.Configuration;

namespace Subscriptions.Database;

internal static class DatabaseExtensions
{
    public static IServiceCollection AddDatabase(this IServiceCollection services)
    {
        // Columns are snake_case, C# members PascalCase.
        Dapper.DefaultTypeMap.MatchNamesWithUnderscores = true;
        services.AddSection<DatabaseOptions>(DatabaseOptions.Section);
        services.AddSingleton(sp => NpgsqlDataSource.Create(sp.GetRequiredService<IOptions<DatabaseOptions>>().Value.Postgres));
        services.AddSingleton<MigrationRunner>();
        return services;
    }

    /// <summary>Applies pending migrations before the other background services start.</summary>
    public static IServiceCollection AddMigrationsAtStartup(this IServiceCollection services) =>
        services.AddHostedService<MigrateAtStartup>();

    /// <summary><c>GET /healthz</c>: 200 when the process is up and the database answers, 503 otherwise.</summary>
    public static IEndpointRouteBuilder MapHealth(this IEndpointRouteBuilder endpoints)
    {
        endpoints.MapGet("/healthz", async (NpgsqlDataSource dataSource, CancellationToken cancellationToken) =>
        {
            using var deadline = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken);
            deadline.CancelAfter(TimeSpan.FromSeconds(5));
            try
            {
                await using var connection = await dataSource.OpenConnectionAsync(deadline.Token);
                await connection.ExecuteScalarAsync<int>(new CommandDefinition("SELECT 1", cancellationToken: deadline.Token));
                return Results.Ok(new { status = "healthy", database = "reachable" });
            }
            catch (Exception e) when (e is NpgsqlException or OperationCanceledException && !cancellationToken.IsCancellationRequested)
            {
                return Results.Problem(
                    statusCode: StatusCodes.Status503ServiceUnavailable, title: "The database is unreachable", detail: e.Message);
            }
        });
        return endpoints;
    }

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
