using Microsoft.AspNetCore.Diagnostics;
using Microsoft.AspNetCore.Http.HttpResults;
using Npgsql;
using Subscriptions.Web.Pages;

namespace Subscriptions.Web;

/// <summary>
/// Exceptions that are the client's doing (a body too large, too slow or malformed) or the database's
/// (unreachable, hung, out of connections) answered as what they are, 4xx or 503 with Retry-After,
/// never as a 500 with a stack trace: a problem body for API clients, a page for browsers.
/// </summary>
internal sealed class RequestProblems(ILogger<RequestProblems> logger) : IExceptionHandler
{
    private const int RetryAfterSeconds = 10;

    /// <summary>After a signup turned away because too many wait for the database: a burst passes in seconds.</summary>
    private const int BusyRetryAfterSeconds = 2;

    public async ValueTask<bool> TryHandleAsync(HttpContext context, Exception exception, CancellationToken cancellationToken)
    {
        var (status, title, detail) = exception switch
        {
            BadHttpRequestException { StatusCode: StatusCodes.Status413PayloadTooLarge } =>
                (StatusCodes.Status413PayloadTooLarge, "The request body is too large", "Send less."),
            BadHttpRequestException { StatusCode: StatusCodes.Status408RequestTimeout } =>
                (StatusCodes.Status408RequestTimeout, "The request body came too slowly", "Send it again, all at once."),
            BadHttpRequestException bad => (bad.StatusCode, "The request is malformed", bad.Message),
            // The form reader's limits (FormOptions): too many fields, or a field or file too large.
            InvalidDataException e when e.Message.Contains("limit", StringComparison.OrdinalIgnoreCase) =>
                (StatusCodes.Status413PayloadTooLarge, "The form is too large", e.Message),
            InvalidDataException e => (StatusCodes.Status400BadRequest, "The form is malformed", e.Message),
            // A multipart body that ends before its closing boundary.
            IOException when !context.RequestAborted.IsCancellationRequested =>
                (StatusCodes.Status400BadRequest, "The request body ended early", "Send the whole body."),
            // Text PostgreSQL cannot hold (a NUL) that reached a query: each endpoint refuses what it knows of first.
            PostgresException { SqlState: PostgresErrorCodes.CharacterNotInRepertoire } =>
                (StatusCodes.Status400BadRequest, "The request holds a character that cannot be stored", "Leave out control characters such as NUL."),
            _ when DatabaseUnavailable(exception) => (StatusCodes.Status503ServiceUnavailable, "The service is briefly unavailable",
                $"Its database cannot be reached right now. Nothing was changed; try again in a minute."),
            Subscribers.SignupsQueueFullException => (StatusCodes.Status503ServiceUnavailable, "Too many signups at this moment",
                "Nothing was stored; try again in a few seconds."),
            _ => (0, "", ""),
        };
        if (status == 0 || context.Response.HasStarted)
        {
            return false;
        }
        if (exception is Subscribers.SignupsQueueFullException)
        {
            context.Response.Headers.RetryAfter = BusyRetryAfterSeconds.ToString(System.Globalization.CultureInfo.InvariantCulture);
        }
        else if (status == StatusCodes.Status503ServiceUnavailable)
        {
            logger.LogWarning("{Method} {Path} answered 503: the database is unavailable ({Error})", context.Request.Method, context.Request.Path, exception.Message);
            context.Response.Headers.RetryAfter = RetryAfterSeconds.ToString(System.Globalization.CultureInfo.InvariantCulture);
        }
        await AnswerAsync(context, status, title, detail);
        return true;
    }

    /// <summary>A page for a browser (a form post or a page it asked for), a problem body for everyone else.</summary>
    public static Task AnswerAsync(HttpContext context, int status, string title, string detail)
    {
        context.Response.StatusCode = status;
        var request = context.Request;
        var wantsPage = request.Headers.Accept.Any(value => value?.Contains("text/html", StringComparison.OrdinalIgnoreCase) == true)
            && !request.Path.StartsWithSegments("/api") && !request.Path.StartsWithSegments("/webhooks");
        return wantsPage
            ? new RazorComponentResult<ProblemPage>(new { Title = title, Detail = detail }) { StatusCode = status }.ExecuteAsync(context)
            : TypedResults.Problem(statusCode: status, title: title, detail: detail).ExecuteAsync(context);
    }

    /// <summary>The database could not be reached or did not answer, as opposed to a query that failed on its own.</summary>
    private static bool DatabaseUnavailable(Exception exception)
    {
        for (var e = exception; e is not null; e = e.InnerException)
        {
            switch (e)
            {
                // Class 08 connection exception, 53 insufficient resources, 57P admin/crash shutdown or not yet accepting.
                case PostgresException postgres:
                    return postgres.SqlState.StartsWith("08", StringComparison.Ordinal) || postgres.SqlState.StartsWith("53", StringComparison.Ordinal)
                        || postgres.SqlState.StartsWith("57P", StringComparison.Ordinal);
                case NpgsqlException:
                    return true;
            }
        }
        return false;
    }
}
