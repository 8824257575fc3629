using Dapper;
using Npgsql;
using Subscriptions.Matching;

namespace Subscriptions.Digest;

/// <summary>
/// Turns a day's matches into <c>deliveries</c>: one row per subscriber with at least one matching
/// paper, written in batches as the matcher streams them. The unique (subscriber, day) key makes
/// planning a day twice add nothing.
/// </summary>
internal sealed class DeliveryPlanner(NpgsqlDataSource dataSource, TopicMatcher matcher, TimeProvider time)
{
    private const int BatchSize = 5000;

    /// <summary>Plans the day; returns how many subscribers matched and how many deliveries are new.</summary>
    public async Task<(long Matched, long Added)> PlanAsync(DateOnly day, CancellationToken cancellationToken)
    {
        long matched = 0, added = 0;
        var ids = new List<long>(BatchSize);
        var papers = new List<string>(BatchSize);
        await foreach (var list in matcher.MatchAllAsync(day, cancellationToken))
        {
            matched++;
            ids.Add(list.SubscriberId);
            papers.Add(PlannedPaper.Serialize(list.Papers));
            if (ids.Count == BatchSize)
            {
                added += await InsertAsync(day, ids, papers, cancellationToken);
                ids.Clear();
                papers.Clear();
            }
        }
        if (ids.Count > 0)
        {
            added += await InsertAsync(day, ids, papers, cancellationToken);
        }
        return (matched, added);
    }

    private async Task<int> InsertAsync(DateOnly day, List<long> ids, List<string> papers, CancellationToken cancellationToken)
    {
        const string sql = """
            WITH planned AS (
                INSERT INTO deliveries (subscriber_id, day, papers, next_attempt_at, created_at)
                SELECT id, @day, papers::jsonb, @now, @now FROM unnest(@ids, @papers) AS t(id, papers)
                ON CONFLICT (subscriber_id, day) DO NOTHING
                RETURNING id, day)
            INSERT INTO delivery_queue (delivery_id, day) SELECT id, day FROM planned
            """;
        await using var connection = await dataSource.OpenConnectionAsync(cancellationToken);
        return await connection.ExecuteAsync(new CommandDefinition(
            sql, new { day, now = time.GetUtcNow(), ids = ids.ToArray(), papers = papers.ToArray() }, cancellationToken: cancellationToken));
    }
}
