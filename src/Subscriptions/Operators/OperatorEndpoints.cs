using System.Security.Claims;
using Microsoft.AspNetCore.Antiforgery;
using Microsoft.AspNetCore.Authentication;
using Microsoft.AspNetCore.Authentication.Cookies;
using Microsoft.AspNetCore.Http.HttpResults;
using Subscriptions.Digest;
using Subscriptions.Subscribers;
using Subscriptions.Web;

namespace Subscriptions.Operators;

/// <summary>The operator console: sign-in, the dashboard, run controls, subscriber lookup and its actions. Every page is a Razor component.</summary>
internal static class OperatorEndpoints
{

    public static IEndpointRouteBuilder MapOperatorConsole(this IEndpointRouteBuilder endpoints)
    {
        var admin = endpoints.MapGroup("/admin").AddEndpointFilter(ValidateAntiforgeryAsync);
        admin.MapGet("/signin", (string? returnUrl) => SignInPage(returnUrl, error: null)).AllowAnonymous();
        admin.MapPost("/signin", SignInAsync).AllowAnonymous().RequireRateLimiting(OperatorsExtensions.SignInRateLimit).WithSmallBody();

        admin.MapGet("/password", (HttpContext context) => PasswordPage(error: null, context)).RequireAuthorization();
        admin.MapPost("/password", ChangePasswordAsync).RequireAuthorization().RequireRateLimiting(OperatorsExtensions.PasswordChangeRateLimit).WithSmallBody();

        var console = admin.MapGroup("").RequireAuthorization().AddEndpointFilter(RequireOwnPasswordAsync);
        console.MapGet("", ShowDashboardAsync);
        console.MapPost("/signout", (Delegate)SignOutAsync).WithSmallBody();
        console.MapPost("/sending/pause", (HttpContext context, SendingControl sending, CancellationToken cancellationToken) =>
            SetSendingAsync(context, paused: true, sending, signal: null, cancellationToken)).WithSmallBody();
        console.MapPost("/sending/resume", (HttpContext context, SendingControl sending, DeliverySignal signal, CancellationToken cancellationToken) =>
            SetSendingAsync(context, paused: false, sending, signal, cancellationToken)).WithSmallBody();
        console.MapPost("/digest/run", RunDigestAsync).WithSmallBody();
        console.MapGet("/subscribers", LookUpAsync);
        console.MapPost("/subscribers/{id:long}/{action}", ActAsync).WithSmallBody();
        return endpoints;
    }

    private static RazorComponentResult SignInPage(string? returnUrl, string? error, int statusCode = StatusCodes.Status200OK) =>
        new RazorComponentResult<SignInPage>(new { ReturnUrl = LocalAdminPath(returnUrl), Error = error }) { StatusCode = statusCode };

    private static async Task<Results<RedirectHttpResult, RazorComponentResult>> SignInAsync(
        HttpContext context, OperatorAccounts accounts, SignInThrottle throttle, ILogger<OperatorAccounts> logger, CancellationToken cancellationToken)
    {
        var form = await context.Request.ReadFormAsync(cancellationToken);
        string email = form["email"].ToString(), password = form["password"].ToString();
        // A control character is in no address (and a NUL is one PostgreSQL cannot even compare): refused like a wrong password.
        var wellFormed = email.Length is > 0 and <= EmailAddresses.MaxLength && !email.Any(char.IsControl) && password.Length is > 0 and <= OperatorAccounts.MaxPasswordLength;
        if (wellFormed && !throttle.TryAttempt(email))
        {
            logger.LogWarning("Operator sign-in for {Email} refused from {Client}: {Attempts} sign-ins for that address within {Window}",
                OperatorAccounts.Normalize(email), context.Connection.RemoteIpAddress, SignInThrottle.AttemptsPerAddress, SignInThrottle.Window);
            return SignInPage(form["returnUrl"],
                $"Too many sign-ins for this address: try again in {SignInThrottle.Window.TotalMinutes:N0} minutes.", StatusCodes.Status429TooManyRequests);
        }
        var account = wellFormed ? await accounts.VerifyAsync(email, password, cancellationToken) : null;
        if (account is null)
        {
            logger.LogWarning("Operator sign-in refused from {Client}", context.Connection.RemoteIpAddress);
            // The same words for an unknown address and a wrong password: the page must not tell which addresses are operators.
            return SignInPage(form["returnUrl"], "That address and password do not match an operator account.", StatusCodes.Status400BadRequest);
        }
        await StartSessionAsync(context, account);
        logger.LogInformation("Operator {Operator} signed in{OneTime}", account.Email, account.MustChangePassword ? " with a one-time password" : "");
        return TypedResults.Redirect(account.MustChangePassword ? "/admin/password" : LocalAdminPath(form["returnUrl"]));
    }

    private static Task StartSessionAsync(HttpContext context, OperatorAccount account)
    {
        List<Claim> claims =
        [
            new Claim(ClaimTypes.NameIdentifier, account.Id.ToString(System.Globalization.CultureInfo.InvariantCulture)),
            new Claim(ClaimTypes.Name, account.Email),
            new Claim(OperatorsExtensions.StampClaim, account.PasswordStamp.ToString()),
        ];
        if (account.MustChangePassword)
        {
            claims.Add(new Claim(OperatorsExtensions.MustChangePasswordClaim, "true"));
        }
        return context.SignInAsync(new ClaimsPrincipal(new ClaimsIdentity(claims, CookieAuthenticationDefaults.AuthenticationScheme)));
    }

    /// <summary>A session that signed in with a one-time password sees nothing of the console but the page that replaces it (and sign-out).</summary>
    private static async ValueTask<object?> RequireOwnPasswordAsync(EndpointFilterInvocationContext context, EndpointFilterDelegate next)
    {
        var http = context.HttpContext;
        return http.User.HasClaim(OperatorsExtensions.MustChangePasswordClaim, "true") && !http.Request.Path.StartsWithSegments("/admin/signout")
            ? TypedResults.Redirect("/admin/password")
            : await next(context);
    }

    /// <summary>
    /// A session that signed in with its own password must give it again to choose another: a session's cookie alone (a
    /// shared machine, a session left open) would otherwise take the account for good, its owner's password and sessions
    /// gone. One that signed in with a printed one-time password has used that up, and is not asked.
    /// </summary>
    private static bool AsksForCurrentPassword(HttpContext context) => !context.User.HasClaim(OperatorsExtensions.MustChangePasswordClaim, "true");

    private static RazorComponentResult PasswordPage(string? error, HttpContext context, int statusCode = StatusCodes.Status200OK) =>
        new RazorComponentResult<PasswordPage>(new { Error = error, MinLength = OperatorAccounts.MinPasswordLength, AskCurrent = AsksForCurrentPassword(context) })
        {
            StatusCode = statusCode,
        };

    private static async Task<Results<RedirectHttpResult, RazorComponentResult>> ChangePasswordAsync(
        HttpContext context, OperatorAccounts accounts, SignInThrottle throttle, ILogger<OperatorAccounts> logger, CancellationToken cancellationToken)
    {
        var form = await context.Request.ReadFormAsync(cancellationToken);
        string password = form["password"].ToString(), repeated = form["repeat"].ToString(), current = form["current"].ToString();
        var name = context.User.FindFirstValue(ClaimTypes.Name) ?? "";
        var error = password.Length < OperatorAccounts.MinPasswordLength || password.Length > OperatorAccounts.MaxPasswordLength
            ? $"The password must be {OperatorAccounts.MinPasswordLength} to {OperatorAccounts.MaxPasswordLength} characters long."
            : !string.Equals(password, repeated, StringComparison.Ordinal) ? "The two passwords differ." : null;
        if (error is not null || !long.TryParse(context.User.FindFirstValue(ClaimTypes.NameIdentifier), out var id))
        {
            return PasswordPage(error ?? "Sign in again.", context, StatusCodes.Status400BadRequest);
        }
        // A guess at the current password counts as a sign-in of the account: a copied session cookie, spread over many
        // clients, would otherwise guess it faster than sign-in allows.
        if (AsksForCurrentPassword(context) && !throttle.TryAttempt(name))
        {
            logger.LogWarning("Operator {Operator}: a new password was refused, {Attempts} sign-ins or password checks within {Window}",
                name, SignInThrottle.AttemptsPerAddress, SignInThrottle.Window);
            return PasswordPage($"Too many attempts for this account: try again in {SignInThrottle.Window.TotalMinutes:N0} minutes.", context,
                StatusCodes.Status429TooManyRequests);
        }
        if (AsksForCurrentPassword(context) && (current.Length > OperatorAccounts.MaxPasswordLength
            || await accounts.VerifyAsync(name, current, cancellationToken) is not { } verified || verified.Id != id))
        {
            logger.LogWarning("Operator {Operator}: a new password was refused, the current one given was wrong", name);
            return PasswordPage("The current password is not right.", context, StatusCodes.Status400BadRequest);
        }
        // A new stamp ends every other session of the account; this one goes on with it.
        var account = await accounts.ChangePasswordAsync(id, password, cancellationToken);
        await StartSessionAsync(context, account);
        logger.LogInformation("Operator {Operator} chose a new password", account.Email);
        return TypedResults.Redirect("/admin");
    }

    /// <summary>
    /// Ends the account's sessions on the server, not only this browser's cookie: a cookie is good until it expires, and a
    /// copy of it (a shared machine, a proxy's log) would have outlived the sign-out. Every session of the account ends.
    /// </summary>
    private static async Task<RedirectHttpResult> SignOutAsync(HttpContext context, OperatorAccounts accounts, CancellationToken cancellationToken)
    {
        if (long.TryParse(context.User.FindFirstValue(ClaimTypes.NameIdentifier), out var id))
        {
            await accounts.EndSessionsAsync(id, cancellationToken);
        }
        await context.SignOutAsync();
        return TypedResults.Redirect("/admin/signin");
    }

    private static async Task<RazorComponentResult> ShowDashboardAsync(HttpContext context, Dashboard dashboard, CancellationToken cancellationToken) =>
        DashboardPage(await dashboard.BuildAsync(ConsoleNotice.Take(context), cancellationToken));

    private static RazorComponentResult DashboardPage(DashboardView view, int statusCode = StatusCodes.Status200OK) =>
        new RazorComponentResult<DashboardPage>(new { View = view }) { StatusCode = statusCode };

    private static async Task<IResult> SetSendingAsync(HttpContext context, bool paused, SendingControl sending, DeliverySignal? signal, CancellationToken cancellationToken)
    {
        await sending.SetAsync(paused, context.User.Identity?.Name ?? "?", cancellationToken);
        // This instance resumes at once; the others at their next poll (Digest:PollInterval).
        signal?.Wake();
        return ConsoleNotice.SeeOther(context, "/admin",
            paused ? "Sending is paused on every instance: senders finish the batch in hand and claim nothing more." : "Sending resumed.");
    }

    private static async Task<IResult> RunDigestAsync(HttpContext context, RunNow runNow, Dashboard dashboard, CancellationToken cancellationToken) =>
        runNow.TryStart(context.User.Identity?.Name ?? "?")
            ? ConsoleNotice.SeeOther(context, "/admin",
                $"The digest of {dashboard.Today:yyyy-MM-dd} is running: papers are being fetched and deliveries planned; sending follows.")
            : DashboardPage(await dashboard.BuildAsync("A run started from this console is still planning; nothing new was started.", cancellationToken),
                StatusCodes.Status409Conflict);

    private static async Task<RazorComponentResult> LookUpAsync(string? email, HttpContext context, SubscriberLookup lookup, CancellationToken cancellationToken)
    {
        var notice = ConsoleNotice.Take(context); // an action's outcome, on the page it redirected to
        if (string.IsNullOrWhiteSpace(email))
        {
            return SubscriberPage(email: "", details: null, notice);
        }
        if (email.Length > EmailAddresses.MaxLength)
        {
            return SubscriberPage("", null, $"That is longer than any email address ({EmailAddresses.MaxLength} characters at most); nothing was looked up.",
                StatusCodes.Status400BadRequest);
        }
        if (email.Any(char.IsControl))
        {
            return SubscriberPage("", null, "That holds a control character, which no email address does; nothing was looked up.",
                StatusCodes.Status400BadRequest);
        }
        return await lookup.FindAsync(email, cancellationToken) is { } details
            ? SubscriberPage(email, details, notice)
            : SubscriberPage(email, null, notice ?? "No subscriber has that address.", StatusCodes.Status404NotFound);
    }

    private static async Task<IResult> ActAsync(
        long id, string action, HttpContext context, SubscriberLookup lookup, CancellationToken cancellationToken)
    {
        SubscriberAction? chosen = action switch
        {
            "resend-confirmation" => SubscriberAction.ResendConfirmation,
            "unsubscribe" => SubscriberAction.Unsubscribe,
            "suppress" => SubscriberAction.Suppress,
            "lift-suppression" => SubscriberAction.LiftSuppression,
            "erase" => SubscriberAction.Erase,
            _ => null,
        };
        if (chosen is not { } known)
        {
            return SubscriberPage("", null, "There is no such action; nothing was changed.", StatusCodes.Status404NotFound);
        }
        // Erasing cannot be undone: the form's box must be ticked (the browser insists, and so does this).
        var request = context.Request;
        if (known == SubscriberAction.Erase && (!request.HasFormContentType || (await request.ReadFormAsync(cancellationToken))["confirm"] != "yes"))
        {
            var unconfirmed = await lookup.FindByIdAsync(id, cancellationToken);
            return SubscriberPage(unconfirmed?.Email ?? "", unconfirmed, "Tick the box to confirm the erasure; nothing was changed.",
                StatusCodes.Status400BadRequest);
        }
        // To the subscriber's page, or to the empty lookup once they are erased.
        return await lookup.ActAsync(id, known, cancellationToken) is { } outcome
            ? ConsoleNotice.SeeOther(context,
                outcome.Email is { } email ? LookupPath(email) : "/admin/subscribers", outcome.Notice)
            : SubscriberPage("", null, "No such subscriber; nothing was changed.", StatusCodes.Status404NotFound);
    }

    /// <summary>The lookup page of one address (the dashboard links its failed deliveries' addresses there).</summary>
    public static string LookupPath(string email) => $"/admin/subscribers?email={Uri.EscapeDataString(email)}";

    private static RazorComponentResult SubscriberPage(string email, SubscriberDetails? details, string? notice, int statusCode = StatusCodes.Status200OK) =>
        new RazorComponentResult<SubscriberPage>(new { Email = email, Details = details, Notice = notice }) { StatusCode = statusCode };

    /// <summary>
    /// Where to go after signing in: a path of the console, never another site, and only of printable ASCII (a response header
    /// cannot carry a line break or, by default, anything else: such a path failed the sign-in with a 500).
    /// </summary>
    private static string LocalAdminPath(string? returnUrl) =>
        returnUrl is { Length: < 2048 } path && path.StartsWith("/admin", StringComparison.Ordinal) && !path.Contains("//", StringComparison.Ordinal)
            && !path.Contains('\\', StringComparison.Ordinal) && path.All(c => c is > ' ' and <= '~')
            ? path
            : "/admin";

    /// <summary>
    /// Every form post under /admin, sign-in included, must carry the token its page was rendered with. Then the
    /// request's tokens (and their cookie) are issued before anything is written, for the forms of the page it answers with.
    /// </summary>
    private static async ValueTask<object?> ValidateAntiforgeryAsync(EndpointFilterInvocationContext context, EndpointFilterDelegate next)
    {
        var http = context.HttpContext;
        var antiforgery = http.RequestServices.GetRequiredService<IAntiforgery>();
        if (HttpMethods.IsPost(http.Request.Method))
        {
            if (!http.Request.HasFormContentType)
            {
                return TypedResults.Problem(statusCode: StatusCodes.Status415UnsupportedMediaType, title: "Send the console's form",
                    detail: "The console takes only its own forms (application/x-www-form-urlencoded).");
            }
            try
            {
                await antiforgery.ValidateRequestAsync(http);
            }
            catch (AntiforgeryValidationException)
            {
                return new RazorComponentResult<Web.Pages.ProblemPage>(new
                {
                    Title = "This form has expired",
                    Detail = "The form was not sent from a page of this console, or the page is too old. Nothing was changed; go back, reload the page and try again.",
                })
                { StatusCode = StatusCodes.Status400BadRequest };
            }
        }
        antiforgery.GetAndStoreTokens(http);
        return await next(context);
    }
}
