using System.Security.Cryptography;
using Microsoft.AspNetCore.DataProtection;

namespace Subscriptions.Operators;

/// <summary>
/// Post/redirect/get for the console's actions: an action answers with 303 See Other to the page that shows its outcome,
/// and the outcome's words ride along in a short-lived cookie that the next page of the console shows once and deletes.
/// Answering the POST with the page itself left the action's URL in the address bar, and a reload sent the action again
/// (a second confirmation email, a second run). Hand-written because TempData, the framework's one-time message, belongs to
/// MVC, which the service does not use; the cookie is protected by Data Protection (the key ring the sign-in cookie uses),
/// so that no link or other site can make the console say something.
/// </summary>
internal static class ConsoleNotice
{
    private const string CookieName = "console-notice";
    private static readonly TimeSpan Lifetime = TimeSpan.FromMinutes(2);

    public static IResult SeeOther(HttpContext context, string path, string notice)
    {
        context.Response.Cookies.Append(CookieName, Protector(context).Protect(notice, Lifetime), CookieOptions(context));
        context.Response.Headers.Location = path;
        return TypedResults.StatusCode(StatusCodes.Status303SeeOther);
    }

    /// <summary>The notice an action left for this page, once: the cookie is deleted as it is read.</summary>
    public static string? Take(HttpContext context)
    {
        if (!context.Request.Cookies.TryGetValue(CookieName, out var protectedNotice))
        {
            return null;
        }
        context.Response.Cookies.Delete(CookieName, CookieOptions(context));
        try
        {
            return Protector(context).Unprotect(protectedNotice);
        }
        catch (CryptographicException)
        {
            return null; // expired, or not ours
        }
    }

    private static ITimeLimitedDataProtector Protector(HttpContext context) =>
        context.RequestServices.GetRequiredService<IDataProtectionProvider>().CreateProtector("Subscriptions.Operators.ConsoleNotice").ToTimeLimitedDataProtector();

    private static CookieOptions CookieOptions(HttpContext context) => new()
    {
        HttpOnly = true,
        Secure = context.Request.IsHttps,
        SameSite = SameSiteMode.Strict,
        Path = "/admin",
        MaxAge = Lifetime,
    };
}
