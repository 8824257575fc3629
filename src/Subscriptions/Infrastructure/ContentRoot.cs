namespace Subscriptions.Infrastructure;

internal static class ContentRoot
{
    /// <summary>
    /// The content root (where appsettings.json is read) for <c>serve</c> and every verb, unless one is given
    /// (<c>--contentRoot</c>, or the host's environment variables): the binary's folder, not the working directory, which
    /// <c>dotnet run --project src/Subscriptions</c> leaves at the repository's root. Null lets the given one count: a root
    /// set in the builder's settings would override it. <c>ASPNETCORE_CONTENTROOT</c> is returned rather than left to the
    /// host: only <c>serve</c>'s web host reads the <c>ASPNETCORE_</c> variables, and it lets them override <c>DOTNET_</c>'s.
    /// </summary>
    public static string? Default(string[] settings)
    {
        if (settings.Any(setting => setting.TrimStart('-', '/').StartsWith("contentRoot", StringComparison.OrdinalIgnoreCase)))
        {
            return null;
        }
        if (Environment.GetEnvironmentVariable("ASPNETCORE_CONTENTROOT") is { Length: > 0 } aspNetCoreRoot)
        {
            return aspNetCoreRoot;
        }
        return string.IsNullOrEmpty(Environment.GetEnvironmentVariable("DOTNET_CONTENTROOT")) ? AppContext.BaseDirectory : null;
    }
}
