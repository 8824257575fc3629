using System.ComponentModel.DataAnnotations;
using Microsoft.Extensions.Options;

namespace Subscriptions.Infrastructure;

internal static class OptionsRegistration
{
    /// <summary>
    /// Binds a configuration section, validates it with its data annotations when the host starts,
    /// and words every failure with the full key (<c>Smtp:Port must be …</c>) so an operator knows
    /// exactly which setting to fix.
    /// </summary>
    public static OptionsBuilder<TOptions> AddSection<TOptions>(this IServiceCollection services, string section)
        where TOptions : class
    {
        services.AddSingleton<IValidateOptions<TOptions>>(new SectionValidator<TOptions>(section));
        return services.AddOptions<TOptions>().BindConfiguration(section).ValidateOnStart();
    }

    private sealed class SectionValidator<TOptions>(string section) : IValidateOptions<TOptions>
        where TOptions : class
    {
        public ValidateOptionsResult Validate(string? name, TOptions options)
        {
            var results = new List<ValidationResult>();
            Validator.TryValidateObject(options, new ValidationContext(options), results, validateAllProperties: true);
            if (results.Count == 0 && options is IValidatableObject validatable)
            {
                results.AddRange(validatable.Validate(new ValidationContext(options)));
            }

            return results.Count == 0
                ? ValidateOptionsResult.Success
                : ValidateOptionsResult.Fail(results.Select(Describe));
        }

        private string Describe(ValidationResult result)
        {
            var member = result.MemberNames.FirstOrDefault();
            return member is null ? $"{section}: {result.ErrorMessage}" : $"{section}:{member} {result.ErrorMessage}";
        }
    }
}

/// <summary>An absolute http or https URL.</summary>
[AttributeUsage(AttributeTargets.Property)]
internal sealed class HttpUrlAttribute() : ValidationAttribute("must be an absolute http:// or https:// URL")
{
    public override bool IsValid(object? value) =>
        value is null || (value is string text && Uri.TryCreate(text, UriKind.Absolute, out var uri)
            && (uri.Scheme == Uri.UriSchemeHttp || uri.Scheme == Uri.UriSchemeHttps));
}
