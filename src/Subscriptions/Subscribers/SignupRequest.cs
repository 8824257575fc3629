using System.Buffers;
using System.Text;
using System.Text.Json;
using Microsoft.AspNetCore.WebUtilities;
using Microsoft.Net.Http.Headers;

namespace Subscriptions.Subscribers;

/// <summary>A signup as it arrived, before validation: JSON or an HTML form.</summary>
internal sealed record SignupRequest(string? Email, IReadOnlyList<string>? Topics, bool FromForm)
{
    public const int MaxBodyBytes = 16 * 1024;

    /// <summary>Reads the body itself, so every way it can be wrong ends in a 4xx problem, never a 500.</summary>
    public static async Task<(SignupRequest? Request, IResult? Problem)> ReadAsync(HttpRequest request, CancellationToken cancellationToken)
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

    private static (SignupRequest?, IResult?) ParseJson(byte[] body)
    {
        JsonDocument document;
        try
        {
            document = JsonDocument.Parse(body);
        }
        catch (JsonException e)
        {
            return (null, TypedResults.Problem(
                statusCode: StatusCodes.Status400BadRequest, title: "The body is not valid JSON", detail: e.Message));
        }

        using (document)
        {
            if (document.RootElement.ValueKind != JsonValueKind.Object)
            {
                return (null, TypedResults.Problem(
                    statusCode: StatusCodes.Status400BadRequest, title: "The body must be a JSON object",
                    detail: "Expected {\"email\": \"…\", \"topics\": [\"…\"]}."));
            }

            var errors = new Dictionary<string, string[]>();
            string? email = null;
            List<string>? topics = null;
            foreach (var property in document.RootElement.EnumerateObject())
            {
                if (property.Name.Equals("email", StringComparison.OrdinalIgnoreCase))
                {
                    if (property.Value.ValueKind == JsonValueKind.String)
                    {
                        email = property.Value.GetString();
                    }
                    else if (property.Value.ValueKind != JsonValueKind.Null)
                    {
                        errors["email"] = ["must be a string"];
                    }
                }
                else if (property.Name.Equals("topics", StringComparison.OrdinalIgnoreCase))
                {
                    if (property.Value.ValueKind == JsonValueKind.Array && property.Value.EnumerateArray().All(t => t.ValueKind == JsonValueKind.String))
                    {
                        topics = [.. property.Value.EnumerateArray().Select(t => t.GetString()!)];
                    }
                    else if (property.Value.ValueKind != JsonValueKind.Null)
                    {
                        errors["topics"] = ["must be an array of strings"];
                    }
                }
            }
            return errors.Count > 0
                ? (null, TypedResults.ValidationProblem(errors, title: "The signup has invalid fields"))
                : (new SignupRequest(email, topics, FromForm: false), null);
        }
    }

    private static SignupRequest ParseForm(byte[] body)
    {
        var fields = new FormReader(Encoding.UTF8.GetString(body)).ReadForm();
        fields.TryGetValue("email", out var email);
        fields.TryGetValue("topics", out var topics);
        return new SignupRequest(email.ToString(), TopicLines(topics), FromForm: true);
    }

    /// <summary>The page's textarea holds one topic per line; a client may also repeat the field.</summary>
    public static List<string> TopicLines(Microsoft.Extensions.Primitives.StringValues values) =>
        [.. values.SelectMany(value => (value ?? "").Split('\n')).Select(line => line.TrimEnd('\r'))];

    private static IResult TooLarge() => TypedResults.Problem(
        statusCode: StatusCodes.Status413PayloadTooLarge,
        title: "The request body is too large",
        detail: $"A signup is at most {MaxBodyBytes / 1024} KiB.");
}
