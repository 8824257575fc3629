using System.Runtime.InteropServices;
using Dapper;
using Microsoft.Extensions.Options;
using Npgsql;

namespace Subscriptions.Matching;

/// <summary>A paper in someone's list: how well it fits, and which of their topics found it.</summary>
internal sealed record PaperMatch(long PaperId, double Score, IReadOnlyList<string> Topics);

/// <summary>One subscriber's capped, ranked list for the day.</summary>
internal sealed record SubscriberMatches(long SubscriberId, string Email, IReadOnlyList<PaperMatch> Papers);

/// <summary>
/// Turns topics and a day's papers into ranked, capped, explained lists. The text search runs in
/// PostgreSQL once per distinct topic (thousands at most, against ~100 papers); combining those
/// hits into each subscriber's list is a single streamed pass over all active subscribers' topics,
/// so the work grows with the number of subscribers but never issues a query per subscriber.
/// </summary>
internal sealed class TopicMatcher(NpgsqlDataSource dataSource, IOptions<MatchingOptions> options)
{
    // Ranking: relevance (2 for a title hit, 1 for an abstract-only hit, plus PostgreSQL's ts_rank,
    // at most ~1) plus the day's trending signal scaled to [0, 1]. A title hit beats an abstract
    // hit unless the abstract paper trends far more.
    private readonly record struct Hit(long PaperId, double Score);

    /// <summary>The list one subscriber with these topics would get (the preview).</summary>
    public async Task<IReadOnlyList<PaperMatch>> MatchAsync(DateOnly day, IReadOnlyList<string> topics, int maxPapers, CancellationToken cancellationToken)
    {
        var hits = await TopicHitsAsync([day], topics, cancellationToken);
        return Rank(topics, hits, maxPapers, new Dictionary<long, PaperAccumulator>(), alreadySent: null);
    }

    /// <summary>
    /// Every active, unsuppressed subscriber's list for the day, capped at their papers-per-email (<c>Digest:MaxPapers</c> when unset),
    /// streamed in subscriber order; subscribers with no match are left out.
    /// </summary>
    public IAsyncEnumerable<SubscriberMatches> MatchAllAsync(DateOnly day, CancellationToken cancellationToken) =>
        MatchAllAsync([day], subscriberIds: null, alreadySent: null, cancellationToken);

    /// <summary>
    /// As above, over the papers of several days, for only <paramref name="subscriberIds"/> (all when null), leaving out
    /// each subscriber's <paramref name="alreadySent"/> papers before the cap.
    /// </summary>
    public async IAsyncEnumerable<SubscriberMatches> MatchAllAsync(
        IReadOnlyList<DateOnly> days, long[]? subscriberIds, IReadOnlyDictionary<long, HashSet<long>>? alreadySent,
        [System.Runtime.CompilerServices.EnumeratorCancellation] CancellationToken cancellationToken)
    {
        var defaultMaxPapers = options.Value.MaxPapers;
        await using var connection = await dataSource.OpenConnectionAsync(cancellationToken);
        const string distinctTopics = """
            SELECT DISTINCT t.text FROM topics t JOIN subscribers s ON s.id = t.subscriber_id
            WHERE s.status = 'active' AND NOT EXISTS (SELECT 1 FROM suppressions x WHERE x.email = s.email_key)
              AND (@subscriberIds::bigint[] IS NULL OR s.id = ANY(@subscriberIds))
            """;
        var topics = (await connection.QueryAsync<string>(new CommandDefinition(distinctTopics, new { subscriberIds }, cancellationToken: cancellationToken))).ToList();
        var hits = await TopicHitsAsync(days, topics, cancellationToken);
        if (hits.Count == 0)
        {
            yield break;
        }

        // Only the topics that found something are read back: a subscriber none of whose topics matched
        // does not appear at all.
        const string subscriberTopics = """
            SELECT s.id, s.email, coalesce(s.max_papers, @defaultMaxPapers), t.text
            FROM subscribers s
            JOIN topics t ON t.subscriber_id = s.id
            WHERE s.status = 'active' AND t.text = ANY(@matchingTopics)
              AND NOT EXISTS (SELECT 1 FROM suppressions x WHERE x.email = s.email_key)
              AND (@subscriberIds::bigint[] IS NULL OR s.id = ANY(@subscriberIds))
            ORDER BY s.id, t.position
            """;
        await using var command = new NpgsqlCommand(subscriberTopics, connection);
        command.Parameters.AddWithValue("defaultMaxPapers", defaultMaxPapers);
        command.Parameters.AddWithValue("matchingTopics", hits.Keys.ToArray());
        command.Parameters.Add(new NpgsqlParameter<long[]?>("subscriberIds", NpgsqlTypes.NpgsqlDbType.Array | NpgsqlTypes.NpgsqlDbType.Bigint) { TypedValue = subscriberIds });
        await using var reader = await command.ExecuteReaderAsync(System.Data.CommandBehavior.SequentialAccess, cancellationToken);

        var scratch = new Dictionary<long, PaperAccumulator>();
        var currentTopics = new List<string>(5);
        long currentId = -1;
        string currentEmail = "";
        var currentMax = defaultMaxPapers;
        while (await reader.ReadAsync(cancellationToken))
        {
            var id = reader.GetInt64(0);
            if (id != currentId)
            {
                if (currentTopics.Count > 0 && Ranked(currentId) is { Count: > 0 } ranked)
                {
                    yield return new SubscriberMatches(currentId, currentEmail, ranked);
                }
                currentId = id;
                currentEmail = reader.GetString(1);
                currentMax = reader.GetInt32(2);
                currentTopics.Clear();
            }
            currentTopics.Add(reader.GetString(3));
        }
        if (currentTopics.Count > 0 && Ranked(currentId) is { Count: > 0 } last)
        {
            yield return new SubscriberMatches(currentId, currentEmail, last);
        }

        List<PaperMatch> Ranked(long id) =>
            Rank(currentTopics, hits, currentMax, scratch, alreadySent is not null && alreadySent.TryGetValue(id, out var sent) ? sent : null);
    }

    /// <summary>For each topic that matches any paper of the days: its hits, best first.</summary>
    private async Task<Dictionary<string, Hit[]>> TopicHitsAsync(IReadOnlyList<DateOnly> days, IReadOnlyList<string> topics, CancellationToken cancellationToken)
    {
        // A paper listed on several of the days counts with its best day's trend.
        const string sql = """
            WITH day_papers AS (
                SELECT d.day, d.paper_id AS id, max(d.upvotes) AS upvotes, min(d.rank) AS rank
                FROM paper_days d
                WHERE d.day = ANY(@days)
                GROUP BY d.day, d.paper_id
            ), trending AS (
                -- Upvotes where the day has them (log-scaled against the day's best), else the place in the list.
                SELECT id, max(trend) AS trend FROM (
                    SELECT id,
                           CASE WHEN max(upvotes) OVER same_day > 0
                                THEN ln(1 + coalesce(upvotes, 0)) / ln(1 + max(upvotes) OVER same_day)
                                ELSE 1 - (rank - 1)::float8 / count(*) OVER same_day
                           END AS trend
                    FROM day_papers
                    WINDOW same_day AS (PARTITION BY day)) per_day
                GROUP BY id
            ), queries AS (
                SELECT DISTINCT topic, topic_query(topic) AS query FROM unnest(@topics::text[]) AS t(topic)
            )
            SELECT q.topic, p.id AS paper_id,
                   CASE WHEN ts_filter(p.search_vector, '{a}') @@ q.query THEN 2 ELSE 1 END
                   + ts_rank(p.search_vector, q.query) + t.trend AS score
            FROM queries q
            CROSS JOIN trending t
            JOIN papers p ON p.id = t.id AND p.search_vector @@ q.query
            ORDER BY q.topic, score DESC, p.id
            """;
        await using var connection = await dataSource.OpenConnectionAsync(cancellationToken);
        var rows = await connection.QueryAsync<(string Topic, long PaperId, double Score)>(
            new CommandDefinition(sql, new { days = days.ToArray(), topics = topics.ToArray() }, cancellationToken: cancellationToken));
        return rows.GroupBy(row => row.Topic, StringComparer.Ordinal)
            .ToDictionary(group => group.Key, group => group.Select(row => new Hit(row.PaperId, row.Score)).ToArray(), StringComparer.Ordinal);
    }

    private static List<PaperMatch> Rank(
        IReadOnlyList<string> topics, Dictionary<string, Hit[]> hits, int maxPapers, Dictionary<long, PaperAccumulator> scratch,
        HashSet<long>? alreadySent)
    {
        scratch.Clear();
        foreach (var topic in topics)
        {
            if (!hits.TryGetValue(topic, out var topicHits))
            {
                continue;
            }
            foreach (var hit in topicHits)
            {
                if (alreadySent?.Contains(hit.PaperId) == true)
                {
                    continue;
                }
                ref var paper = ref CollectionsMarshal.GetValueRefOrAddDefault(scratch, hit.PaperId, out var existed);
                if (!existed)
                {
                    paper = new PaperAccumulator(hit.Score, [topic]);
                }
                else
                {
                    paper.Topics.Add(topic);
                    paper.Score = Math.Max(paper.Score, hit.Score);
                }
            }
        }
        return [.. scratch
            .OrderByDescending(entry => entry.Value.Score)
            .ThenBy(entry => entry.Key)
            .Take(maxPapers)
            .Select(entry => new PaperMatch(entry.Key, entry.Value.Score, entry.Value.Topics))];
    }

    private struct PaperAccumulator(double score, List<string> topics)
    {
        public double Score = score;
        public readonly List<string> Topics = topics;
    }
}
