namespace Subscriptions.Infrastructure;

internal static class ContentRoot
{
    /// <summary>
    /// The content root (where appsettings.json is read) for <c>serve</c> and every verb, unless one is given
    /// (<c>--contentRoot</c>, or the host's environment variables): the binary's folder, not the working directory, which
    /// <c>dotnet run --project src/Subscriptions</c> leaves at the repository's root. Null lets the given one count: a root
    /// set in the builder's settings would override it.
    /// </summary>
    public static string? Default(string[] settings) =>
        settings.Any(setting => setting.TrimStart('-', '/').StartsWith("contentRoot", StringComparison.OrdinalIgnoreCase))
        || !string.IsNullOrEmpty(Environment.GetEnvironmentVariable("ASPNETCORE_CONTENTROOT"))
        || !string.IsNullOrEmpty(Environment.GetEnvironmentVariable("DOTNET_CONTENTROOT"))
            ? null
            : AppContext.BaseDirectory;
}
