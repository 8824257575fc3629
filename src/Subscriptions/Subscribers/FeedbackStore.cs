using Dapper;
using Npgsql;

namespace Subscriptions.Subscribers;

/// <summary>A paper the subscriber rated: "more like this" (<see cref="Liked"/>) or "less like this". Public, as the page that lists them is.</summary>
public sealed record RatedPaper(long PaperId, string Title, bool Liked);

/// <summary>"More/less like this": each subscriber's examples in <c>paper_feedback</c>, which the matcher reads to steer their ranking.</summary>
internal sealed class FeedbackStore(NpgsqlDataSource dataSource, TimeProvider time)
{
    /// <summary>
    /// The paper's title, when one of the subscriber's digests carried it (<paramref name="sentOnly"/>) or at all: a rating
    /// of any paper at all, any number of them, was each compared with every candidate of theirs at every slot.
    /// </summary>
    public async Task<string?> PaperTitleAsync(long subscriberId, long paperId, bool sentOnly, CancellationToken cancellationToken)
    {
        // Only the deliveries from the day before the paper was first listed on can hold it: a link in a recent email
        // otherwise read every digest the subscriber ever got, a year of them by default. (Planning, which asks this of every
        // due subscriber and many papers, narrows it further to the days after each listing: DeliveryPlanner.PlannableDaysAsync.)
        const string sql = """
            SELECT title FROM papers p
            WHERE p.id = @paperId
              AND (NOT @sentOnly OR EXISTS (SELECT 1 FROM delivery_papers d
                                            WHERE d.subscriber_id = @subscriberId AND p.id = ANY (d.paper_ids)
                                              AND d.day >= coalesce((SELECT min(day) - 1 FROM paper_days WHERE paper_id = @paperId), '-infinity')))
            """;
        await using var connection = await dataSource.OpenConnectionAsync(cancellationToken);
        return await connection.QuerySingleOrDefaultAsync<string?>(
            new CommandDefinition(sql, new { subscriberId, paperId, sentOnly }, cancellationToken: cancellationToken));
    }

    /// <summary>Records the rating (a later one replaces it); false when there is no such paper, or no longer such a subscriber.</summary>
    public async Task<bool> RateAsync(long subscriberId, long paperId, bool liked, CancellationToken cancellationToken)
    {
        const string sql = """
            INSERT INTO paper_feedback (subscriber_id, paper_id, liked, created_at)
            SELECT @subscriberId, id, @liked, @now FROM papers WHERE id = @paperId
            ON CONFLICT (subscriber_id, paper_id) DO UPDATE SET liked = EXCLUDED.liked, created_at = EXCLUDED.created_at
            """;
        await using var connection = await dataSource.OpenConnectionAsync(cancellationToken);
        try
        {
            return await connection.ExecuteAsync(new CommandDefinition(
                sql, new { subscriberId, paperId, liked, now = time.GetUtcNow() }, cancellationToken: cancellationToken)) == 1;
        }
        catch (PostgresException e) when (e.SqlState == PostgresErrorCodes.ForeignKeyViolation)
        {
            // The subscriber was erased between the link's lookup and this insert.
            return false;
        }
    }

    public async Task RemoveAsync(long subscriberId, long paperId, CancellationToken cancellationToken)
    {
        const string sql = "DELETE FROM paper_feedback WHERE subscriber_id = @subscriberId AND paper_id = @paperId";
        await using var connection = await dataSource.OpenConnectionAsync(cancellationToken);
        await connection.ExecuteAsync(new CommandDefinition(sql, new { subscriberId, paperId }, cancellationToken: cancellationToken));
    }

    public async Task<IReadOnlyList<RatedPaper>> RatedAsync(long subscriberId, CancellationToken cancellationToken)
    {
        const string sql = """
            SELECT f.paper_id, p.title, f.liked FROM paper_feedback f JOIN papers p ON p.id = f.paper_id
            WHERE f.subscriber_id = @subscriberId
            ORDER BY f.liked DESC, f.created_at DESC, f.paper_id
            """;
        await using var connection = await dataSource.OpenConnectionAsync(cancellationToken);
        return [.. await connection.QueryAsync<RatedPaper>(new CommandDefinition(sql, new { subscriberId }, cancellationToken: cancellationToken))];
    }
}
