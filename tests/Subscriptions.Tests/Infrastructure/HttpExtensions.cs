using System.Net.Http.Json;
using System.Text.Json;

namespace Subscriptions.Tests.Infrastructure;

public static class HttpExtensions
{
    public static Task<HttpResponseMessage> SignUpAsync(this HttpClient client, string email, params string[] topics) =>
        client.PostAsJsonAsync("/subscriptions", new { email, topics });

    public static Task<HttpResponseMessage> PostFormAsync(this HttpClient client, string url, params (string Key, string Value)[] fields) =>
        client.PostAsync(url, new FormUrlEncodedContent(fields.Select(f => KeyValuePair.Create(f.Key, f.Value))));

    public static async Task<JsonElement> ReadJsonAsync(this HttpResponseMessage response)
    {
        using var document = JsonDocument.Parse(await response.Content.ReadAsStringAsync());
        return document.RootElement.Clone();
    }
}
