using System.Security.Claims;
using Microsoft.AspNetCore.Authentication.Cookies;
using Microsoft.AspNetCore.DataProtection;
using Microsoft.AspNetCore.DataProtection.KeyManagement;
using Microsoft.Extensions.DependencyInjection.Extensions;
using Microsoft.Extensions.Options;
using Npgsql;
using Subscriptions.Bounces;
using Subscriptions.Database;
using Subscriptions.Digest;
using Subscriptions.Infrastructure;
using Subscriptions.Subscribers;
using Subscriptions.Web;

namespace Subscriptions.Operators;

internal static class OperatorsExtensions
{
    public const string SignInRateLimit = "admin-signin";
    public const string PasswordChangeRateLimit = "admin-password";
    public const int SignInsPerMinute = 5;
    public const string StampClaim = "password_stamp";

    /// <summary>Carried by a session signed in with a one-time password: it may only choose a password of its own.</summary>
    public const string MustChangePasswordClaim = "must_change_password";

    /// <summary>The operators' accounts (what <c>admin add</c> needs).</summary>
    public static IServiceCollection AddOperatorAccounts(this IServiceCollection services) => services.AddFeature("operator-accounts", services =>
    {
        services.AddDatabase();
        services.TryAddSingleton(TimeProvider.System);
        services.AddSingleton<OperatorAccounts>();
    });

    /// <summary>
    /// The console under <c>/admin</c>: cookie sign-in (HttpOnly, SameSite=Strict, Secure when the request is HTTPS,
    /// 8 hours sliding, ended by a password reset), antiforgery on every form, sign-ins rate-limited per client address.
    /// </summary>
    public static IServiceCollection AddOperatorConsole(this IServiceCollection services) => services.AddFeature("operator-console", services =>
    {
        services.AddOperatorAccounts().AddDigest().AddSubscribers().AddSuppressions();
        services.AddSingleton<SendingControl>();
        services.AddSingleton<Dashboard>();
        services.AddSingleton<SubscriberLookup>();
        services.AddSingleton<RunNow>();
        // The console's forms read their antiforgery token from the request (Operators/FormToken.razor).
        services.AddHttpContextAccessor();
        // Sessions and forms are protected with keys every instance shares, whatever folder each runs from.
        services.AddDataProtection().SetApplicationName("Subscriptions");
        services.AddSingleton<IConfigureOptions<KeyManagementOptions>>(provider =>
            new ConfigureOptions<KeyManagementOptions>(keys => keys.XmlRepository = new DatabaseKeyRing(provider.GetRequiredService<NpgsqlDataSource>())));
        services.AddAuthentication(CookieAuthenticationDefaults.AuthenticationScheme).AddCookie(cookie =>
        {
            cookie.Cookie.Name = "subscriptions_operator";
            cookie.Cookie.Path = "/admin";
            cookie.Cookie.HttpOnly = true;
            cookie.Cookie.SameSite = SameSiteMode.Strict;
            // Tests and a local run use plain http; behind TLS (or App:KnownProxies forwarding https) the cookie is Secure.
            cookie.Cookie.SecurePolicy = CookieSecurePolicy.SameAsRequest;
            cookie.ExpireTimeSpan = TimeSpan.FromHours(8);
            cookie.SlidingExpiration = true;
            cookie.LoginPath = "/admin/signin";
            cookie.AccessDeniedPath = "/admin/signin";
            cookie.Events.OnValidatePrincipal = async context =>
            {
                var accounts = context.HttpContext.RequestServices.GetRequiredService<OperatorAccounts>();
                if (!long.TryParse(context.Principal?.FindFirstValue(ClaimTypes.NameIdentifier), out var id)
                    || !Guid.TryParse(context.Principal?.FindFirstValue(StampClaim), out var stamp)
                    || !await accounts.IsCurrentAsync(id, stamp, context.HttpContext.RequestAborted))
                {
                    context.RejectPrincipal();
                }
            };
        });
        services.AddAuthorization();
        services.AddAntiforgery(antiforgery =>
        {
            antiforgery.Cookie.Name = "subscriptions_antiforgery";
            antiforgery.Cookie.Path = "/admin";
            antiforgery.Cookie.SameSite = SameSiteMode.Strict;
            antiforgery.Cookie.SecurePolicy = CookieSecurePolicy.SameAsRequest;
        });
        services.AddSingleton<SignInThrottle>();
        services.AddRateLimiter(options => options
            .AddPerClientPerMinute(SignInRateLimit, _ => SignInsPerMinute, context => HttpMethods.IsPost(context.Request.Method))
            // Choosing a new password checks the current one: as many guesses a minute as the sign-in allows, counted apart.
            .AddPerClientPerMinute(PasswordChangeRateLimit, _ => SignInsPerMinute, context => HttpMethods.IsPost(context.Request.Method)));
    });

    /// <summary>Who is signed in, then whether they may: before the endpoints run.</summary>
    public static WebApplication UseOperatorConsole(this WebApplication app)
    {
        app.UseAuthentication();
        app.UseAuthorization();
        return app;
    }
}
