using System.ComponentModel.DataAnnotations;
using Microsoft.Extensions.DependencyInjection.Extensions;
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
        services.AddKnownSettings(section, SettingKeys.Of(typeof(TOptions)));
        return services.AddOptions<TOptions>().BindConfiguration(section).ValidateOnStart();
    }

    /// <summary>
    /// Keys of <paramref name="section"/> the service reads (besides those of the classes bound to it): any other
    /// key there stops start-up, so that a misspelt <c>Smtp:Hostname</c> is not silently a pickup folder.
    /// </summary>
    public static IServiceCollection AddKnownSettings(this IServiceCollection services, string section, IEnumerable<string> keys)
    {
        services.AddSingleton(new KnownSettings(section, [.. keys]));
        services.TryAddEnumerable(ServiceDescriptor.Singleton<IValidateOptions<UnknownSettingsCheck>, UnknownSettingsValidator>());
        services.AddOptions<UnknownSettingsCheck>().ValidateOnStart();
        return services;
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

internal sealed record KnownSettings(string Section, IReadOnlyList<string> Keys);

/// <summary>Nothing to bind: the hook that runs <see cref="UnknownSettingsValidator"/> with the other start-up checks.</summary>
internal sealed class UnknownSettingsCheck;

/// <summary>
/// The configuration binder's own <c>ErrorOnUnknownConfiguration</c> cannot do this: two classes share the <c>Digest</c> and
/// the <c>App</c> sections, and each would refuse the other's keys.
/// </summary>
internal sealed class UnknownSettingsValidator(IConfiguration configuration, IEnumerable<KnownSettings> known) : IValidateOptions<UnknownSettingsCheck>
{
    // Where other software's connection strings may live beside ours.
    private static readonly HashSet<string> OpenSections = new(StringComparer.OrdinalIgnoreCase) { "ConnectionStrings" };

    public ValidateOptionsResult Validate(string? name, UnknownSettingsCheck options)
    {
        var failures = new List<string>();
        foreach (var section in known.GroupBy(settings => settings.Section, StringComparer.OrdinalIgnoreCase).Where(section => !OpenSections.Contains(section.Key)))
        {
            var keys = section.SelectMany(settings => settings.Keys).ToHashSet(StringComparer.OrdinalIgnoreCase);
            foreach (var (key, value) in configuration.GetSection(section.Key).AsEnumerable(makePathsRelative: true))
            {
                if (value is not null && key.Length > 0 && !keys.Contains(key) && !keys.Any(known => known.EndsWith(":*", StringComparison.Ordinal)
                    && key.StartsWith(known[..^1], StringComparison.OrdinalIgnoreCase)))
                {
                    var settings = keys.Where(known => !known.EndsWith(":*", StringComparison.Ordinal)).Order(StringComparer.Ordinal);
                    failures.Add($"{section.Key}:{key} is not a setting; those of {section.Key} are {string.Join(", ", settings)}.");
                }
            }
        }
        return failures.Count == 0 ? ValidateOptionsResult.Success : ValidateOptionsResult.Fail(failures);
    }
}

internal static class SettingKeys
{
    /// <summary>
    /// The keys the binder fills in an instance of <paramref name="type"/>: each property it can set, and those of the nested
    /// classes of ours within (<c>Imap:Host</c>); a collection's items are <c>Name:*</c>.
    /// </summary>
    public static IEnumerable<string> Of(Type type, string prefix = "")
    {
        foreach (var property in type.GetProperties(System.Reflection.BindingFlags.Public | System.Reflection.BindingFlags.Instance)
            .Where(property => property.SetMethod is { IsPublic: true }))
        {
            var key = prefix + property.Name;
            yield return key;
            var valueType = property.PropertyType;
            if (valueType != typeof(string) && typeof(System.Collections.IEnumerable).IsAssignableFrom(valueType))
            {
                yield return key + ":*";
            }
            else if (valueType.IsClass && valueType.Assembly == typeof(SettingKeys).Assembly)
            {
                foreach (var nested in Of(valueType, key + ":"))
                {
                    yield return nested;
                }
            }
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
