using Microsoft.AspNetCore.Http.HttpResults;
using Microsoft.Extensions.Options;
using Subscriptions.Email;
using Subscriptions.Web;

namespace Subscriptions.Bounces;

internal static class BouncesEndpoints
{
    /// <summary><c>POST /webhooks/bounces</c>; a 404 unless <c>Bounces:WebhookSecret</c> is set.</summary>
    public static IEndpointRouteBuilder MapBounces(this IEndpointRouteBuilder app)
    {
        var webhooks = app.MapGroup("/webhooks");
        webhooks.MapPost("/bounces", ReceiveAsync).WithSmallBody();
        return app;
    }

    private static async Task<Results<Ok<WebhookReceived>, ProblemHttpResult, NotFound>> ReceiveAsync(
        HttpRequest request, SuppressionStore store, MessageIds messageIds, IOptions<BouncesOptions> options, WebhookRefusals refusals, ILoggerFactory loggers,
        CancellationToken cancellationToken)
    {
        // Decided per request rather than when mapping, so a bad setting is reported with all the others at start.
        if (!options.Value.HasWebhook)
        {
            return TypedResults.NotFound();
        }
        if (await ReadCappedAsync(request, cancellationToken) is not { } body)
        {
            return TypedResults.Problem(statusCode: StatusCodes.Status413PayloadTooLarge, title: "The body is too large",
                detail: $"At most {RequestLimits.SmallBody} bytes.");
        }
        if (!BounceWebhook.IsAuthentic(body, request.Headers[BounceWebhook.SignatureHeader], request.Headers.Authorization, options.Value.WebhookSecret!))
        {
            refusals.Refused("unsigned or wrongly signed", request.HttpContext.Connection.RemoteIpAddress?.ToString());
            return TypedResults.Problem(statusCode: StatusCodes.Status401Unauthorized, title: "Unsigned or wrongly signed request",
                detail: $"Send {BounceWebhook.SignatureHeader}: sha256=<hex HMAC-SHA256 of the body with Bounces:WebhookSecret>.");
        }
        var (events, error, notice) = BounceWebhook.Parse(body);
        if (error is not null)
        {
            refusals.Refused($"malformed ({error})", request.HttpContext.Connection.RemoteIpAddress?.ToString());
            return TypedResults.Problem(statusCode: StatusCodes.Status400BadRequest, title: "Malformed bounce event", detail: error);
        }
        if (notice is not null)
        {
            loggers.CreateLogger(typeof(BouncesEndpoints)).LogWarning("Bounce webhook: {Notice}", notice);
        }
        // The call is signed: the Message-ID and the address it gives are believed.
        await store.RecordAsync([.. events.Select(bounce => bounce with { Sent = messageIds.OfTrustedMessageId(bounce.OriginalMessageId) })],
            SuppressionStore.WebhookSource, cancellationToken);
        return TypedResults.Ok(new WebhookReceived(events.Count));
    }

    /// <summary>The raw body (the signature is over its bytes), or null when it is over the cap (in tests, where Kestrel's own limit is absent).</summary>
    private static async Task<byte[]?> ReadCappedAsync(HttpRequest request, CancellationToken cancellationToken)
    {
        if (request.ContentLength > RequestLimits.SmallBody)
        {
            return null;
        }
        using var buffer = new MemoryStream();
        var chunk = new byte[4096];
        int read;
        while ((read = await request.Body.ReadAsync(chunk, cancellationToken)) > 0)
        {
            buffer.Write(chunk, 0, read);
            if (buffer.Length > RequestLimits.SmallBody)
            {
                return null;
            }
        }
        return buffer.ToArray();
    }

    private sealed record WebhookReceived(int Events);
}
