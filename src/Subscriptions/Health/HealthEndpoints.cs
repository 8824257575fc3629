using Microsoft.AspNetCore.Diagnostics.HealthChecks;
using Microsoft.Extensions.Diagnostics.HealthChecks;
using Npgsql;
using Subscriptions.Database;

namespace Subscriptions.Health;

internal static class HealthEndpoints
{
    public static IServiceCollection AddHealth(this IServiceCollection services)
    {
        services.AddDatabase().AddHealthChecks()
            .AddTypeActivatedCheck<DatabaseHealthCheck>("database", failureStatus: null, tags: [ReadyTag], args: false)
            .AddTypeActivatedCheck<DatabaseHealthCheck>("migrations", failureStatus: null, tags: [ReadyTag], args: true);
        return services;
    }

    private const string ReadyTag = "ready";

    /// <summary>
    /// <c>GET /healthz</c>: 200 when the process is up and the database answers, 503 with a problem body otherwise.
    /// <c>GET /healthz/live</c>: 200 whenever the process answers, no check run. <c>GET /healthz/ready</c>: as <c>/healthz</c>,
    /// and every migration this version knows is applied.
    /// </summary>
    public static IEndpointRouteBuilder MapHealth(this IEndpointRouteBuilder endpoints)
    {
        endpoints.MapHealthChecks("/healthz", new HealthCheckOptions { Predicate = check => check.Name == "database", ResponseWriter = WriteAsync });
        // A liveness probe must not fail when only the database is away: restarting the process would not bring it back.
        endpoints.MapHealthChecks("/healthz/live", new HealthCheckOptions
        {
            Predicate = _ => false,
            ResponseWriter = (context, _) => context.Response.WriteAsJsonAsync(new { status = "healthy" }),
        });
        endpoints.MapHealthChecks("/healthz/ready", new HealthCheckOptions
        {
            Predicate = check => check.Tags.Contains(ReadyTag),
            ResponseWriter = WriteAsync,
        });
        return endpoints;
    }

    private static Task WriteAsync(HttpContext context, HealthReport report) => report.Status == HealthStatus.Healthy
        ? context.Response.WriteAsJsonAsync(new { status = "healthy", database = "reachable" })
        : report.Entries.TryGetValue("database", out var database) && database.Status == HealthStatus.Healthy
        ? TypedResults.Problem(
            statusCode: StatusCodes.Status503ServiceUnavailable,
            title: "The database is not migrated",
            detail: "The database answers, but not every migration of this version is applied yet.").ExecuteAsync(context)
        : TypedResults.Problem(
            statusCode: StatusCodes.Status503ServiceUnavailable,
            title: "The database is unavailable",
            detail: $"PostgreSQL did not answer within {DatabaseHealthCheck.Deadline.TotalSeconds:0} seconds, or refused the connection.").ExecuteAsync(context);

    /// <summary>
    /// <c>SELECT 1</c>, given up at the deadline whether or not Npgsql has returned. Hand-written instead of
    /// AspNetCore.HealthChecks.NpgSql because that check only passes a cancellation token, and against a
    /// hung server (stopped, not down) Npgsql can take its whole timeouts to honour it.
    /// </summary>
    /// <remarks>With <paramref name="migrations"/>, the check also asks that every embedded migration be journaled.</remarks>
    private sealed class DatabaseHealthCheck(NpgsqlDataSource dataSource, bool migrations) : IHealthCheck
    {
        public static readonly TimeSpan Deadline = TimeSpan.FromSeconds(5);

        public async Task<HealthCheckResult> CheckHealthAsync(HealthCheckContext context, CancellationToken cancellationToken = default)
        {
            using var deadline = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken);
            deadline.CancelAfter(Deadline);
            try
            {
                return await SelectOneAsync(deadline.Token).WaitAsync(Deadline, cancellationToken)
                    ? HealthCheckResult.Healthy()
                    : HealthCheckResult.Unhealthy("migrations pending");
            }
            catch (Exception e) when (e is NpgsqlException or TimeoutException or OperationCanceledException && !cancellationToken.IsCancellationRequested)
            {
                return HealthCheckResult.Unhealthy("database unavailable");
            }
        }

        private async Task<bool> SelectOneAsync(CancellationToken cancellationToken)
        {
            await using var connection = await dataSource.OpenConnectionAsync(cancellationToken);
            if (!migrations)
            {
                await using var command = new NpgsqlCommand("SELECT 1", connection);
                await command.ExecuteScalarAsync(cancellationToken);
                return true;
            }
            const string sql = """
                SELECT count(*) = cardinality($1) FROM schema_migrations WHERE name = ANY($1)
                """;
            await using var migrated = new NpgsqlCommand(sql, connection);
            migrated.Parameters.Add(new NpgsqlParameter<string[]> { TypedValue = [.. MigrationRunner.Scripts.Select(script => script.Name)] });
            return await migrated.ExecuteScalarAsync(cancellationToken) is true;
        }
    }
}
