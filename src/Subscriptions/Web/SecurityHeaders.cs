namespace Subscriptions.Web;

internal static class SecurityHeaders
{
    // Pages load nothing from elsewhere; their styles are inline attributes, and their one script is allowed by its hash.
    private static readonly string ContentSecurityPolicy =
        $"default-src 'none'; script-src {Pages.TimeZoneScript.CspSource}; style-src 'unsafe-inline'; img-src 'self' data:; form-action 'self'; frame-ancestors 'none'; base-uri 'none'";

    /// <summary>Headers on every response; pages reached through a link with a token are never cached or referred on.</summary>
    public static IApplicationBuilder UseSecurityHeaders(this IApplicationBuilder app) => app.Use((context, next) =>
    {
        context.Response.OnStarting(() =>
        {
            var headers = context.Response.Headers;
            headers.ContentSecurityPolicy = ContentSecurityPolicy;
            headers.XContentTypeOptions = "nosniff";
            headers.XFrameOptions = "DENY";
            headers["Referrer-Policy"] = "no-referrer";
            if (context.Request.Query.ContainsKey("token"))
            {
                headers.CacheControl = "no-store";
            }
            return Task.CompletedTask;
        });
        return next(context);
    });
}
