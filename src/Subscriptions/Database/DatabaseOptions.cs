using System.ComponentModel.DataAnnotations;
using System.Data.Common;
using Npgsql;

namespace Subscriptions.Database;

internal sealed class DatabaseOptions : IValidatableObject
{
    public const string Section = "ConnectionStrings";

    /// <summary>
    /// The most connections one instance opens (web requests, Quartz, the workers share one pool) unless the connection
    /// string says otherwise. Npgsql's own default, 100, is all of PostgreSQL's default <c>max_connections</c>: under a
    /// burst of requests a single instance would take every connection the server has and the rest would fail with
    /// 53300 "too many clients". With a bounded pool, requests beyond it wait their turn (up to the connection
    /// string's <c>Timeout</c>, 15 s) instead; 20 is more than PostgreSQL on a few cores runs at once.
    /// </summary>
    public const int DefaultMaxPoolSize = 20;

    /// <summary>
    /// How many of a connection's most used statements Npgsql keeps prepared (<c>Max Auto Prepare</c>) unless the connection
    /// string says otherwise; Npgsql's own default is none. Prepared, a statement is parsed and planned once per connection
    /// instead of at every call: the signup benchmark's profile had a sixth of the machine's CPU in PostgreSQL's parsing
    /// and planning, and with 64 the signups per second at 20 connections went from 305 and 257 to 355 and 471 (two runs
    /// each, in turn). Behind PgBouncer in transaction mode set it to 0, or use PgBouncer 1.21 or later with
    /// <c>max_prepared_statements</c>.
    /// </summary>
    public const int DefaultMaxAutoPrepare = 64;

    [Required(AllowEmptyStrings = false, ErrorMessage = "is required: the Npgsql connection string of the database")]
    public string Postgres { get; set; } = "";

    /// <summary>Whether the connection string sets the pool size itself (under any of Npgsql's names for it).</summary>
    public static bool SetsPoolSize(string connectionString) => Sets(connectionString, "maximumpoolsize", "maxpoolsize");

    /// <summary>Whether the connection string sets <c>Max Auto Prepare</c> itself.</summary>
    public static bool SetsAutoPrepare(string connectionString) => Sets(connectionString, "maxautoprepare");

    private static bool Sets(string connectionString, params string[] keys)
    {
        var parsed = new DbConnectionStringBuilder { ConnectionString = connectionString };
        return parsed.Keys.Cast<string>().Select(key => key.Replace(" ", "", StringComparison.Ordinal).ToLowerInvariant())
            .Any(keys.Contains);
    }

    /// <summary>The connection string with this service's defaults where it sets none (<see cref="DefaultMaxPoolSize"/>, <see cref="DefaultMaxAutoPrepare"/>).</summary>
    public static void Configure(NpgsqlDataSourceBuilder dataSource, string connectionString)
    {
        dataSource.ConnectionStringBuilder.ConnectionString = connectionString;
        if (!SetsPoolSize(connectionString))
        {
            dataSource.ConnectionStringBuilder.MaxPoolSize = DefaultMaxPoolSize;
        }
        if (!SetsAutoPrepare(connectionString))
        {
            dataSource.ConnectionStringBuilder.MaxAutoPrepare = DefaultMaxAutoPrepare;
        }
    }

    public IEnumerable<ValidationResult> Validate(ValidationContext validationContext)
    {
        string? problem = null;
        try
        {
            // Built as the service builds it, defaults included, without connecting: Npgsql checks the settings together
            // (a Minimum Pool Size above the maximum, say) only when the pool is built, which would be a stack trace later.
            var dataSource = new NpgsqlDataSourceBuilder();
            Configure(dataSource, Postgres);
            using var probe = dataSource.Build();
        }
        catch (Exception e) when (e is ArgumentException or NotSupportedException or InvalidOperationException)
        {
            problem = e.Message + (SetsPoolSize(Postgres) ? "" : $" (Maximum Pool Size is {DefaultMaxPoolSize} unless it is set)");
        }
        if (problem is not null)
        {
            yield return new ValidationResult($"is not a valid connection string: {problem}", [nameof(Postgres)]);
        }
    }
}
