using Subscriptions.Subscribers;
using Subscriptions.Tests.Infrastructure;

namespace Subscriptions.Tests;

/// <summary>
/// Statements run per address, per round or per console page that must find their rows by an index, not by reading a table that grows for
/// years: each is planned with sequential scans priced out, and must name its index.
/// </summary>
public sealed class IndexUseTests(TestDatabase database) : IClassFixture<TestDatabase>
{
    [Theory]
    // An erasure, and Retention's of every signup never confirmed.
    [InlineData("DELETE FROM bounce_events WHERE email = @email", "bounce_events_email")]
    // The data export.
    [InlineData("SELECT kind, status, source, received_at FROM bounce_events WHERE email = @email ORDER BY id", "bounce_events_email")]
    // A bounce's verdict counts the address's soft bounces.
    [InlineData("SELECT count(*) FROM bounce_events WHERE email = @email AND kind = 'soft' AND received_at > now() - interval '7 days'", "bounce_events_email")]
    // Retention's hourly look for signups never confirmed.
    [InlineData($"SELECT id FROM subscribers WHERE {SubscriberData.NeverConfirmedSince} ORDER BY id LIMIT 500", "subscribers_never_confirmed")]
    // The console's runs of the last days.
    [InlineData("SELECT day, count(*) FROM deliveries WHERE day > @since GROUP BY day", "deliveries_day")]
    public async Task AStatementByAddressOrRoundUsesItsIndex(string statement, string index)
    {
        var plan = await database.QueryAsync<string>(
            $"SET enable_seqscan = off; EXPLAIN {statement}", new { email = "someone@example.org", unconfirmedSince = DateTimeOffset.UtcNow, since = new DateOnly(2026, 11, 20) });

        Assert.Contains(plan, line => line.Contains(index, StringComparison.Ordinal));
    }
}
