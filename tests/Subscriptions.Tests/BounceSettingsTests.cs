using Subscriptions.Tests.Infrastructure;

namespace Subscriptions.Tests;

/// <summary>Bad <c>Bounces:*</c> settings stop the service at start, each named by its key.</summary>
public sealed class BounceSettingsTests(TestDatabase database) : IClassFixture<TestDatabase>
{
    [Fact]
    public async Task AnImapHostWithoutCredentialsIsNamed()
    {
        var (exitCode, _, error) = await ServeAsync("--Bounces:Imap:Host=imap.example.org", "--Bounces:Imap:Port=0", "--Bounces:KeepProcessed=01:00:00");

        Assert.Equal(78, exitCode);
        Assert.Contains("Bounces:Imap:Username and Bounces:Imap:Password are required when Bounces:Imap:Host is set", error);
        Assert.Contains("Bounces:Imap:Port must be between 1 and 65535", error);
        Assert.Contains("Bounces:KeepProcessed must be 0 (kept for good) or between 1 and 36,500 days", error);
    }

    [Fact]
    public async Task AShortWebhookSecretAndABadSoftBounceLimitAreNamedWithTheOtherBadSettings()
    {
        var (exitCode, _, error) = await ServeAsync("--Bounces:WebhookSecret=short", "--Bounces:SoftBounceLimit=0", "--Smtp:Port=99999");

        Assert.Equal(78, exitCode);
        Assert.Contains("Bounces:WebhookSecret must be at least 16 characters long", error);
        Assert.Contains("Bounces:SoftBounceLimit must be between 1 and 1000", error);
        Assert.Contains("Smtp:Port must be between 1 and 65535", error);
    }

    private Task<(int ExitCode, string Output, string Error)> ServeAsync(params string[] settings) =>
        ServiceBinary.RunAsync(["serve", .. settings], new Dictionary<string, string>
        {
            ["ConnectionStrings__Postgres"] = database.ConnectionString,
            ["App__TokenSecret"] = "a-secret-for-the-command-line-tests-only",
        });
}
