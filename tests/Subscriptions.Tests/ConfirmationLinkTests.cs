using System.Net;
using Microsoft.Extensions.Time.Testing;
using MimeKit;
using Subscriptions.Tests.Infrastructure;

namespace Subscriptions.Tests;

/// <summary>With no SMTP host the confirmation is an .eml file in the pickup folder; its link lasts seven days.</summary>
public sealed class ConfirmationLinkTests(TestDatabase database) : IClassFixture<TestDatabase>, IAsyncLifetime
{
    private readonly FakeTimeProvider _time = new(DateTimeOffset.UtcNow);
    private TestApp _app = null!;
    private HttpClient _client = null!;

    public Task InitializeAsync()
    {
        _app = new TestApp(database, time: _time);
        _client = _app.CreatePlainClient();
        return Task.CompletedTask;
    }

    public async Task DisposeAsync()
    {
        _client.Dispose();
        await _app.DisposeAsync();
    }

    [Fact]
    public async Task ConfirmationWrittenToThePickupFolderConfirmsTheAddress()
    {
        await _client.SignUpAsync("pickup@example.org", "protein folding");

        var message = await PickedUpForAsync("pickup@example.org");
        Assert.Equal("text/plain", message.BodyParts.OfType<TextPart>().First().ContentType.MimeType);
        Assert.Contains(message.BodyParts.OfType<TextPart>(), part => part.IsHtml);
        Assert.Empty(Directory.GetFiles(_app.PickupDirectory, "*.tmp"));

        var confirm = await _client.GetAsync(TestApp.LinkIn(message, "/subscriptions/confirm"));
        Assert.Equal(HttpStatusCode.OK, confirm.StatusCode);
        Assert.Equal("active", await database.SubscriberStatusAsync("pickup@example.org"));
    }

    [Fact]
    public async Task ConfirmationLinkExpiresAfterSevenDays()
    {
        await _client.SignUpAsync("late@example.org", "protein folding");
        var link = TestApp.LinkIn(await PickedUpForAsync("late@example.org"), "/subscriptions/confirm");

        _time.Advance(TimeSpan.FromDays(7) + TimeSpan.FromMinutes(1));
        var expired = await _client.GetAsync(link);

        Assert.Equal(HttpStatusCode.Gone, expired.StatusCode);
        var html = await expired.Content.ReadAsStringAsync();
        Assert.Contains("expired", html);
        Assert.Contains("<a href=\"/\">Sign up again</a>", html);
        Assert.Equal("pending", await database.SubscriberStatusAsync("late@example.org"));
    }

    [Fact]
    public async Task ConfirmationLinkStillWorksOnTheSeventhDay()
    {
        await _client.SignUpAsync("patient@example.org", "protein folding");
        var link = TestApp.LinkIn(await PickedUpForAsync("patient@example.org"), "/subscriptions/confirm");

        _time.Advance(TimeSpan.FromDays(7) - TimeSpan.FromMinutes(1));

        Assert.Equal(HttpStatusCode.OK, (await _client.GetAsync(link)).StatusCode);
        Assert.Equal("active", await database.SubscriberStatusAsync("patient@example.org"));
    }

    private async Task<MimeMessage> PickedUpForAsync(string email)
    {
        var forEmail = await Eventually.ValueAsync(
            async () => (await _app.PickedUpAsync()).Where(m => m.To.Mailboxes.Any(to => to.Address == email)).ToList(),
            found => found.Count == 1,
            $"exactly one .eml file for {email} in {_app.PickupDirectory}", found => $"{found.Count} file(s)");
        return forEmail[0];
    }
}
