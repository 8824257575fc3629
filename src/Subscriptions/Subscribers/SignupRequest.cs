using System.Buffers;
using System.Globalization;
using System.Text;
using System.Text.Json;
using Microsoft.AspNetCore.Http.HttpResults;
using Microsoft.AspNetCore.WebUtilities;
using Microsoft.Net.Http.Headers;
using Subscriptions.Matching;
using Subscriptions.Web;

namespace Subscriptions.Subscribers;

/// <summary>
/// A signup as it arrived, before validation: JSON or an HTML form. <c>Website</c> is the honeypot, a field
/// people never see, so a signup that fills it came from a bot.
/// </summary>
internal sealed record SignupRequest(string? Email, IReadOnlyList<string>? Topics, bool FromForm, string? Website = null)
{
    /// <summary>The delivery fields as typed (see <see cref="DeliveryChoice"/>); all optional.</summary>
    public string? TimeZone { get; init; }
    public string? DeliveryHour { get; init; }
    public string? Frequency { get; init; }
    public string? Weekday { get; init; }

    public bool FilledHoneypot => !string.IsNullOrEmpty(Website);

    public const int MaxBodyBytes = RequestLimits.SmallBody;

    /// <summary>Reads the body itself (at most <see cref="MaxBodyBytes"/>, however it is sent), so every way it can be wrong ends in a 4xx problem.</summary>
    public static async Task<(SignupRequest? Request, ProblemHttpResult? Problem)> ReadAsync(HttpRequest request, CancellationToken cancellationToken)
    {
        if (request.ContentLength > MaxBodyBytes)
        {
            return (null, TooLarge());
        }
        var isJson = request.HasJsonContentType();
        var isForm = MediaTypeHeaderValue.TryParse(request.ContentType, out var mediaType)
            && mediaType.MediaType.Equals("application/x-www-form-urlencoded", StringComparison.OrdinalIgnoreCase);
        if (!isJson && !isForm)
        {
            return (null, TypedResults.Problem(
                statusCode: StatusCodes.Status415UnsupportedMediaType,
                title: "Unsupported content type",
                detail: "Send the signup as application/json ({\"email\": \"…\", \"topics\": [\"…\"]}) or as an HTML form (application/x-www-form-urlencoded)."));
        }

        if (await ReadBodyAsync(request.Body, cancellationToken) is not { } body)
        {
            return (null, TooLarge());
        }
        return isJson ? ParseJson(body) : (ParseForm(body), null);
    }

    private static async Task<byte[]?> ReadBodyAsync(Stream body, CancellationToken cancellationToken)
    {
        var buffer = ArrayPool<byte>.Shared.Rent(MaxBodyBytes + 1);
        try
        {
            var length = 0;
            int read;
            while (length <= MaxBodyBytes && (read = await body.ReadAsync(buffer.AsMemory(length, MaxBodyBytes + 1 - length), cancellationToken)) > 0)
            {
                length += read;
            }
            return length > MaxBodyBytes ? null : buffer.AsSpan(0, length).ToArray();
        }
        finally
        {
            ArrayPool<byte>.Shared.Return(buffer);
        }
    }

    private static (SignupRequest?, ProblemHttpResult?) ParseJson(byte[] body)
    {
        try
        {
            return JsonSerializer.Deserialize<SignupJson>(body, JsonSerializerOptions.Web) is { } json
                ? (new SignupRequest(json.Email, json.Topics, FromForm: false, json.Website)
                {
                    TimeZone = json.TimeZone,
                    DeliveryHour = json.DeliveryHour?.ToString(CultureInfo.InvariantCulture),
                    Frequency = json.Frequency,
                    Weekday = json.Weekday,
                }, null)
                : (null, NotAnObject());
        }
        catch (JsonException e) when (e.InnerException is null or InvalidOperationException or FormatException && FieldOf(e.Path) is { } field)
        {
            // A value of the wrong type (no inner reader error): name the field it is in.
            var errors = new Dictionary<string, string[]>
            {
                [field] = [field switch
                {
                    "topics" => "must be an array of strings",
                    "deliveryHour" => "must be a whole hour from 0 to 23",
                    _ => "must be a string",
                }],
            };
            return (null, TypedResults.Problem(new HttpValidationProblemDetails(errors)
            {
                Status = StatusCodes.Status400BadRequest,
                Title = "The signup has invalid fields",
            }));
        }
        catch (JsonException e) when (e.InnerException is null)
        {
            return (null, NotAnObject());
        }
        catch (JsonException e)
        {
            return (null, TypedResults.Problem(
                statusCode: StatusCodes.Status400BadRequest, title: "The body is not valid JSON", detail: e.Message));
        }
    }

    /// <summary>The field (<c>email</c>, <c>topics</c>, <c>timeZone</c>, …) named by the path of a JSON error (<c>$.topics[1]</c>).</summary>
    private static string? FieldOf(string? path) =>
        path?.StartsWith("$.", StringComparison.Ordinal) == true && path[2..].Split('[', '.')[0] is var name
            ? Fields.FirstOrDefault(field => field.Equals(name, StringComparison.OrdinalIgnoreCase))
            : null;

    private static readonly string[] Fields = ["email", "topics", "timeZone", "deliveryHour", "frequency", "weekday"];

    private static SignupRequest ParseForm(byte[] body)
    {
        // The body is read whole, for JSON and form alike, so FormOptions do not apply here: the reader gets their limits.
        var reader = new FormReader(Encoding.UTF8.GetString(body)) { ValueCountLimit = WebExtensions.MaxFormFields, KeyLengthLimit = WebExtensions.MaxFormKeyLength };
        var fields = reader.ReadForm();
        fields.TryGetValue("email", out var email);
        fields.TryGetValue("topics", out var topics);
        fields.TryGetValue("website", out var website);
        return new SignupRequest(email.ToString(), TopicRules.Lines(topics), FromForm: true, website.ToString())
        {
            TimeZone = fields.GetValueOrDefault("timeZone").ToString(),
            DeliveryHour = fields.GetValueOrDefault("deliveryHour").ToString(),
            Frequency = fields.GetValueOrDefault("frequency").ToString(),
            Weekday = fields.GetValueOrDefault("weekday").ToString(),
        };
    }

    private static ProblemHttpResult NotAnObject() => TypedResults.Problem(
        statusCode: StatusCodes.Status400BadRequest, title: "The body must be a JSON object",
        detail: "Expected {\"email\": \"…\", \"topics\": [\"…\"]}.");

    private static ProblemHttpResult TooLarge() => TypedResults.Problem(
        statusCode: StatusCodes.Status413PayloadTooLarge,
        title: "The request body is too large",
        detail: $"A signup is at most {MaxBodyBytes / 1024} KiB.");

    private sealed record SignupJson(
        string? Email, List<string>? Topics, string? Website, string? TimeZone, int? DeliveryHour, string? Frequency, string? Weekday);
}
