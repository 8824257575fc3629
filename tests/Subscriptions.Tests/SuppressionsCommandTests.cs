using Subscriptions.Subscribers;
using Subscriptions.Tests.Infrastructure;

namespace Subscriptions.Tests;

/// <summary>The <c>suppressions</c> verb as an operator runs it: list, add, remove.</summary>
public sealed class SuppressionsCommandTests(TestDatabase database) : IClassFixture<TestDatabase>
{
    [Fact]
    public async Task AnOperatorAddsListsAndLiftsASuppression()
    {
        await database.ExecuteAsync("""
            INSERT INTO suppressions (email, reason, detail, created_at) VALUES ('bounced@example.org', 'hard_bounce', '5.1.1', '2026-11-24 08:00Z');
            INSERT INTO bounce_events (email, kind, status, source, received_at) VALUES ('bounced@example.org', 'soft', '4.2.2', 'imap', now());
            """);
        var environment = new Dictionary<string, string> { ["ConnectionStrings__Postgres"] = database.ConnectionString };

        var add = await ServiceBinary.RunAsync(["suppressions", "add", "Someone@Example.org"], environment);
        var addAgain = await ServiceBinary.RunAsync(["suppressions", "add", "someone@example.org"], environment);
        var list = await ServiceBinary.RunAsync(["suppressions", "list"], environment);

        Assert.Equal((0, 0, 0), (add.ExitCode, addAgain.ExitCode, list.ExitCode));
        Assert.Contains("Suppressed Someone@Example.org.", add.Output);
        Assert.Contains("already suppressed", addAgain.Output);
        Assert.Contains("bounced@example.org\thard_bounce\t2026-11-24 08:00Z\t5.1.1", list.Output);
        Assert.Contains("someone@example.org\toperator\t", list.Output);
        Assert.Contains("2 suppressed address(es)", list.Output);

        var remove = await ServiceBinary.RunAsync(["suppressions", "remove", "bounced@example.org"], environment);
        var removeAgain = await ServiceBinary.RunAsync(["suppressions", "remove", "bounced@example.org"], environment);

        Assert.Equal((0, 0), (remove.ExitCode, removeAgain.ExitCode));
        Assert.Contains("Lifted the suppression of bounced@example.org.", remove.Output);
        Assert.Contains("was not suppressed", removeAgain.Output);
        Assert.Equal(["someone@example.org"], await database.QueryAsync<string>("SELECT email FROM suppressions"));
        // Its soft bounces are forgotten with it: the next one starts a new count.
        Assert.Equal(0, await database.ScalarAsync<long>("SELECT count(*) FROM bounce_events WHERE email = 'bounced@example.org'"));
    }

    [Fact]
    public async Task ASuppressionKeptAfterItsSubscriberErasedTheirDataIsLiftedByTheAddress()
    {
        // Erasure keeps the suppression under the hash of the address, which the operator cannot type.
        await database.ExecuteAsync("INSERT INTO suppressions (email, reason, created_at) VALUES (@key, 'hard_bounce', now())",
            new { key = SubscriberData.ErasedKey("erased-then-lifted@example.org") });
        var environment = new Dictionary<string, string> { ["ConnectionStrings__Postgres"] = database.ConnectionString };

        var remove = await ServiceBinary.RunAsync(["suppressions", "remove", "Erased-Then-Lifted@example.org"], environment);

        Assert.Equal(0, remove.ExitCode);
        Assert.Contains("Lifted the suppression of Erased-Then-Lifted@example.org.", remove.Output);
        Assert.Equal(0, await database.ScalarAsync<long>("SELECT count(*) FROM suppressions WHERE email = @key",
            new { key = SubscriberData.ErasedKey("erased-then-lifted@example.org") }));
    }

    [Theory]
    [InlineData("suppressions", "add", "not an address")]
    [InlineData("suppressions", "add")]
    [InlineData("suppressions", "frobnicate", "someone@example.org")]
    public async Task BadArgumentsExit64WithTheUsage(params string[] arguments)
    {
        var (exitCode, _, error) = await ServiceBinary.RunAsync(arguments, new Dictionary<string, string> { ["ConnectionStrings__Postgres"] = database.ConnectionString });

        Assert.Equal(64, exitCode);
        Assert.Contains("Usage:", error);
    }
}
