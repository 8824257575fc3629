using System.ComponentModel.DataAnnotations;
using Npgsql;

namespace Subscriptions.Database;

internal sealed class DatabaseOptions : IValidatableObject
{
    public const string Section = "ConnectionStrings";

    [Required(AllowEmptyStrings = false, ErrorMessage = "is required: the Npgsql connection string of the database")]
    public string Postgres { get; set; } = "";

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
