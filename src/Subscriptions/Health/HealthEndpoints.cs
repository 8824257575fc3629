using Microsoft.AspNetCore.Diagnostics.HealthChecks;
using Microsoft.Extensions.Diagnostics.HealthChecks;
using Npgsql;
using Subscriptions.Database;

namespace Subscriptions.Health;

internal static class HealthEndpoints
{
    private static readonly TimeSpan DatabaseDeadline = TimeSpan.FromSeconds(5);

    public static IServiceCollection AddHealth(this IServiceCollection services)
    {
        services.AddDatabase().AddHealthChecks()
            .AddNpgSql(provider => provider.GetRequiredService<NpgsqlDataSource>(), name: "database", timeout: DatabaseDeadline);
        return services;
    }

    /// <summary><c>GET /healthz</c>: 200 when the process is up and the database answers, 503 with a problem body otherwise.</summary>
    public static IEndpointRouteBuilder MapHealth(this IEndpointRouteBuilder endpoints)
    {
        endpoints.MapHealthChecks("/healthz", new HealthCheckOptions { ResponseWriter = WriteAsync });
        return endpoints;
    }

    private static Task WriteAsync(HttpContext context, HealthReport report) => report.Status == HealthStatus.Healthy
        ? context.Response.WriteAsJsonAsync(new { status = "healthy", database = "reachable" })
        : TypedResults.Problem(
            statusCode: StatusCodes.Status503ServiceUnavailable,
            title: "The database is unreachable",
            detail: $"PostgreSQL did not answer within {DatabaseDeadline.TotalSeconds:0} seconds, or refused the connection.").ExecuteAsync(context);
}
