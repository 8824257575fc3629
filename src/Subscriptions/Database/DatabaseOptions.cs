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

    [Required(AllowEmptyStrings = false, ErrorMessage = "is required: the Npgsql connection string of the database")]
    public string Postgres { get; set; } = "";

    /// <summary>Whether the connection string sets the pool size itself (under any of Npgsql's names for it).</summary>
    public static bool SetsPoolSize(string connectionString)
    {
        var parsed = new DbConnectionStringBuilder { ConnectionString = connectionString };
        return parsed.Keys.Cast<string>().Select(key => key.Replace(" ", "", StringComparison.Ordinal).ToLowerInvariant())
            .Any(key => key is "maximumpoolsize" or "maxpoolsize");
    }

    public IEnumerable<ValidationResult> Validate(ValidationContext validationContext)
    {
        string? problem = null;
        try
        {
            _ = new NpgsqlConnectionStringBuilder(Postgres);
        }
        catch (ArgumentException e)
        {
            problem = e.Message;
        }
        if (problem is not null)
        {
            yield return new ValidationResult($"is not a valid connection string: {problem}", [nameof(Postgres)]);
        }
    }
}
