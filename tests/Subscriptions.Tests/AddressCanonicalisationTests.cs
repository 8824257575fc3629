using System.Net;
using Subscriptions.Subscribers;
using Subscriptions.Tests.Infrastructure;

namespace Subscriptions.Tests;

/// <summary>One address, however it is typed, is one subscriber; what cannot be mailed is refused with a reason.</summary>
public sealed class AddressCanonicalisationTests(TestDatabase database) : IClassFixture<TestDatabase>, IAsyncLifetime
{
    private TestApp _app = null!;
    private HttpClient _client = null!;

    public Task InitializeAsync()
    {
        _app = new TestApp(database);
        _client = _app.CreatePlainClient();
        return Task.CompletedTask;
    }

    public async Task DisposeAsync()
    {
        _client.Dispose();
        await _app.DisposeAsync();
    }

    [Theory]
    [InlineData("user@bücher.de", "user@bücher.de")]
    [InlineData("user@xn--bcher-kva.de", "user@bücher.de")] // an A-label comes back as its U-label
    [InlineData("user@BÜCHER.de", "user@bücher.de")]
    [InlineData("Ada@Example.ORG", "Ada@example.org")] // the local part as typed, the domain folded
    [InlineData("u\u0308ser@example.org", "\u00fcser@example.org")] // decomposed ü becomes composed (NFC)
    [InlineData("  ada@example.org ", "ada@example.org")]
    public void AnAddressHasOneCanonicalForm(string typed, string canonical)
    {
        var (address, problem) = EmailAddresses.Canonicalize(typed);

        Assert.Null(problem);
        Assert.Equal(canonical, address);
    }

    [Theory]
    [InlineData("a@example.org\u00a0", "invisible or non-breaking")]
    [InlineData("a\u200b@example.org", "invisible or non-breaking")]
    [InlineData("\ufeffa@example.org", "invisible or non-breaking")]
    [InlineData("a@-example.org", "domain name that is not valid")]
    [InlineData("a@example-.org", "domain name that is not valid")]
    [InlineData("a@exa_mple.org", "domain name that is not valid")]
    public void AnAddressThatCannotBeMailedAsTypedIsRefusedWithAReason(string typed, string reason)
    {
        var (address, problem) = EmailAddresses.Canonicalize(typed);

        Assert.Null(address);
        Assert.Contains(reason, problem);
    }

    [Fact]
    public void ALoneSurrogateIsNotText()
    {
        // Built here: a theory's data would be serialized, and the surrogate replaced on the way.
        var (address, problem) = EmailAddresses.Canonicalize("a" + (char)0xD800 + "@example.org");

        Assert.Null(address);
        Assert.Contains("not valid text", problem);
    }

    [Fact]
    public void RfcLengthsAreEnforced()
    {
        var longLocalPart = EmailAddresses.Canonicalize(new string('a', 65) + "@example.org");
        var longLabel = EmailAddresses.Canonicalize("a@" + new string('b', 64) + ".org");
        var longestLocalPart = EmailAddresses.Canonicalize(new string('a', 64) + "@example.org");

        Assert.Contains("at most 64 characters before the @", longLocalPart.Problem);
        Assert.Contains("domain name that is not valid", longLabel.Problem);
        Assert.Null(longestLocalPart.Problem);
    }

    [Fact]
    public async Task AnAddressThatGrowsPastTheLimitWhenItsDomainIsFoldedIsRefused()
    {
        // 134 characters as typed; IDNA folds each U+FB03 (ﬃ) to "ffi", and the labels to 63 characters: 260 in all, past
        // the table's limit, and the signup answered 500.
        var label = new string('\uFB03', 21);
        var typed = $"{new string('a', 64)}@{label}.{label}.{label}.com";

        var response = await _client.SignUpAsync(typed, "graph neural networks");

        Assert.Equal(HttpStatusCode.BadRequest, response.StatusCode);
        var errors = (await response.ReadJsonAsync()).GetProperty("errors").GetProperty("email")[0].GetString();
        Assert.Contains("at most 254 characters", errors);
    }

    [Fact]
    public async Task AnAddressTypedFourWaysIsOneSubscriber()
    {
        foreach (var typed in new[] { "üser@bücher.de", "u\u0308ser@BÜCHER.de", "üser@xn--bcher-kva.de", "ÜSER@bücher.de" })
        {
            Assert.Equal(HttpStatusCode.Accepted, (await _client.SignUpAsync(typed, "graph neural networks")).StatusCode);
        }

        var rows = await database.QueryAsync<string>("SELECT email FROM subscribers WHERE email_key = @key", new { key = "üser@bücher.de" });
        Assert.Equal(["üser@bücher.de"], rows);
    }

    [Fact]
    public async Task ANonBreakingSpaceIsRefusedNotMailedToAnotherDomain()
    {
        var response = await _client.SignUpAsync("nbsp@example.org\u00a0", "graph neural networks");

        Assert.Equal(HttpStatusCode.BadRequest, response.StatusCode);
        var errors = (await response.ReadJsonAsync()).GetProperty("errors").GetProperty("email")[0].GetString();
        Assert.Contains("non-breaking", errors);
        Assert.Equal(0, await database.ScalarAsync<long>("SELECT count(*) FROM subscribers WHERE email LIKE 'nbsp@%'"));
    }

    [Fact]
    public async Task TheDatabaseRefusesASecondRowForTheSameKeyWhateverItsCollation()
    {
        await database.ExecuteAsync("""
            INSERT INTO subscribers (email, email_key, status, subscription_key, created_at, updated_at)
            VALUES ('key@example.org', 'key@example.org', 'active', '\x00000000000000000000000000000000', now(), now())
            """);

        var second = await Assert.ThrowsAsync<Npgsql.PostgresException>(() => database.ExecuteAsync("""
            INSERT INTO subscribers (email, email_key, status, subscription_key, created_at, updated_at)
            VALUES ('KEY@example.org', 'key@example.org', 'active', '\x00000000000000000000000000000000', now(), now())
            """));
        Assert.Equal("23505", second.SqlState);
        // A row written without a key (by hand) gets one.
        await database.ExecuteAsync("""
            INSERT INTO subscribers (email, status, subscription_key, created_at, updated_at)
            VALUES ('Hand@Example.org', 'active', '\x00000000000000000000000000000000', now(), now())
            """);
        Assert.Equal("hand@example.org", await database.ScalarAsync<string>("SELECT email_key FROM subscribers WHERE email = 'Hand@Example.org'"));
    }
}
