using System.Globalization;
using System.Numerics.Tensors;
using System.Runtime.InteropServices;
using System.Text;
using System.Text.Json;
using Dapper;
using Microsoft.Extensions.Options;
using Npgsql;
using Subscriptions.Database;
using Subscriptions.Meaning;

namespace Subscriptions.Matching;

/// <summary>
/// A paper in someone's list: how well it fits, the topics whose words it mentions (or whose
/// <c>author:</c>/<c>category:</c> filters it meets), and the topics it is only close to in meaning.
/// </summary>
internal sealed record PaperMatch(long PaperId, double Score, IReadOnlyList<string> Topics, IReadOnlyList<string> CloseTo);

/// <summary>One subscriber's capped, ranked list for the day.</summary>
internal sealed record SubscriberMatches(long SubscriberId, string Email, IReadOnlyList<PaperMatch> Papers);

/// <summary>
/// Turns topics and a day's papers into ranked, capped, explained lists. The text search runs in
/// PostgreSQL once per distinct topic (thousands at most, against ~100 papers), and so does the
/// meaning: one cosine per distinct topic and paper, in memory. Combining those hits into each
/// subscriber's list is a single streamed pass over all active subscribers' topics, so the work
/// grows with the number of subscribers but never issues a query per subscriber.
/// </summary>
internal sealed class TopicMatcher(
    NpgsqlDataSource dataSource, EmbeddingStore embeddings, TextEmbedder embedder, IOptions<MatchingOptions> options)
{
    // Ranking: word relevance (2 for a title hit, 1 for an abstract-only hit or a met author/category
    // filter, plus PostgreSQL's ts_rank, at most ~1), plus 4 times the cosine of the meaning, plus the
    // day's trending signal scaled to [0, 1], weighed 1 with meaning off (as before meaning, when it was the
    // only other signal) and 0.1 with meaning on: every paper is already among the day's trending ones, and on
    // the judged set (JudgedSetTests) a heavier trend pushed well-trending but less relevant papers into the
    // first five (precision@5 0.746 at 1/4, 0.777 at 0.1, 0.783 without it).
    private const double MeaningWeight = 4;
    private const double TrendWeightWithMeaning = 0.1;

    /// <summary>
    /// The days' papers (by their place, as <see cref="TopicHit.Paper"/> refers to them), their meaning vectors in the same
    /// order (null when meaning is off), and for each topic that matches any of them its hits, best first.
    /// </summary>
    private sealed record DayHits(long[] PaperIds, float[]?[]? Vectors, Dictionary<string, TopicHit[]> Hits)
    {
        public ListRanker Ranker() => new(PaperIds, Vectors);
    }

    /// <summary>The list one subscriber with these topics would get (the preview).</summary>
    public async Task<IReadOnlyList<PaperMatch>> MatchAsync(DateOnly day, IReadOnlyList<string> topics, int maxPapers, CancellationToken cancellationToken)
    {
        var dayHits = await TopicHitsAsync([day], topics, keepTopicVectors: false, cancellationToken);
        return dayHits.Ranker().Rank(topics, dayHits.Hits, maxPapers, feedback: null, alreadySent: null);
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
        if (subscriberIds is not null)
        {
            await KeyedLookups.DisableJitAsync(connection, cancellationToken);
        }
        // A slot's subscribers are looked up one by one by key. OFFSET 0 keeps the planner from flattening that into a
        // join that reads every subscriber (which it prefers, costing random reads as if from disk).
        var subscribers = subscriberIds is null
            ? "subscribers s"
            : """
              unnest(@subscriberIds::bigint[]) AS wanted(id)
              CROSS JOIN LATERAL (SELECT id, email, email_key, status, max_papers FROM subscribers WHERE id = wanted.id OFFSET 0) AS s
              """;
        // Given subscribers, their topics are read by key alone: a topic of one who turns out inactive or suppressed only
        // costs its search against the day's papers, and the list below leaves that subscriber out anyway.
        var distinctTopics = subscriberIds is null
            ? """
              SELECT DISTINCT t.text FROM subscribers s JOIN topics t ON t.subscriber_id = s.id
              WHERE s.status = 'active' AND NOT EXISTS (SELECT 1 FROM suppressions x WHERE x.email = s.email_key)
              """
            : """
              SELECT DISTINCT t.text FROM unnest(@subscriberIds::bigint[]) AS wanted(id)
              CROSS JOIN LATERAL (SELECT text FROM topics WHERE subscriber_id = wanted.id OFFSET 0) AS t
              """;
        var topics = (await connection.QueryAsync<string>(new CommandDefinition(distinctTopics, new { subscriberIds }, cancellationToken: cancellationToken))).ToList();
        var dayHits = await TopicHitsAsync(days, topics, keepTopicVectors: true, cancellationToken);
        if (dayHits.Hits.Count == 0)
        {
            yield break;
        }
        var feedback = dayHits.Vectors is null ? [] : await FeedbackAsync(connection, subscribers, subscriberIds, cancellationToken);

        // Only the topics that found something are read back: a subscriber none of whose topics matched
        // does not appear at all.
        var subscriberTopics = $"""
            SELECT s.id, s.email, coalesce(s.max_papers, @defaultMaxPapers), t.text
            FROM {subscribers}
            JOIN topics t ON t.subscriber_id = s.id
            WHERE s.status = 'active' AND t.text = ANY(@matchingTopics)
              AND NOT EXISTS (SELECT 1 FROM suppressions x WHERE x.email = s.email_key)
            ORDER BY s.id, t.position
            """;
        if (subscriberIds is null)
        {
            // Left to itself the planner hashes both tables in parallel and sorts every row (spilling to disk) before
            // returning the first, while the lists below wait. A merge join along both primary keys returns the rows in
            // subscriber order from the first on, so the database reads while the lists are ranked. The pool resets the
            // settings when the connection is returned.
            await connection.ExecuteAsync(new CommandDefinition(
                "SET enable_sort = off; SET max_parallel_workers_per_gather = 0; SET jit = off", cancellationToken: cancellationToken));
        }
        await using var command = new NpgsqlCommand(subscriberTopics, connection);
        command.Parameters.AddWithValue("defaultMaxPapers", defaultMaxPapers);
        command.Parameters.AddWithValue("matchingTopics", dayHits.Hits.Keys.ToArray());
        command.Parameters.Add(new NpgsqlParameter<long[]?>("subscriberIds", NpgsqlTypes.NpgsqlDbType.Array | NpgsqlTypes.NpgsqlDbType.Bigint) { TypedValue = subscriberIds });
        await using var reader = await command.ExecuteReaderAsync(System.Data.CommandBehavior.SequentialAccess, cancellationToken);

        var ranker = dayHits.Ranker();
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

        List<PaperMatch> Ranked(long id) => ranker.Rank(currentTopics, dayHits.Hits, currentMax, feedback.GetValueOrDefault(id),
            alreadySent is not null && alreadySent.TryGetValue(id, out var sent) ? sent : null);
    }

    private async Task<DayHits> TopicHitsAsync(
        IReadOnlyList<DateOnly> days, IReadOnlyList<string> topics, bool keepTopicVectors, CancellationToken cancellationToken)
    {
        var distinct = topics.Distinct(StringComparer.Ordinal).ToList();
        var parsed = distinct.ToDictionary(topic => topic, TopicSyntax.Parse, StringComparer.Ordinal);
        // A paper listed on several of the days counts with its best day's trend.
        const string dayPapers = """
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
            )
            SELECT p.id, p.authors, p.categories, t.trend FROM trending t JOIN papers p ON p.id = t.id
            """;
        const string wordHits = """
            WITH queries AS (
                SELECT topic, CASE WHEN words <> '' THEN topic_query(words) END AS query, authors, categories
                FROM jsonb_to_recordset(@queries::jsonb) AS q(topic text, words text, authors text[], categories text[])
            ), day_papers AS (
                SELECT DISTINCT p.id, p.search_vector, p.authors, p.categories
                FROM paper_days d JOIN papers p ON p.id = d.paper_id
                WHERE d.day = ANY(@days)
            )
            SELECT q.topic, p.id,
                   CASE WHEN q.query IS NULL THEN 1
                        WHEN ts_filter(p.search_vector, '{a}') @@ q.query THEN 2 + ts_rank(p.search_vector, q.query)
                        ELSE 1 + ts_rank(p.search_vector, q.query) END AS score
            FROM queries q
            JOIN day_papers p ON (q.query IS NULL OR p.search_vector @@ q.query)
            -- Every author: and category: filter must hold: authors compare without case or accents.
            WHERE NOT EXISTS (SELECT 1 FROM unnest(q.authors) AS wanted(name)
                              WHERE NOT EXISTS (SELECT 1 FROM unnest(p.authors) AS author(name)
                                                WHERE lower(unaccent(author.name)) = lower(unaccent(wanted.name))))
              AND NOT EXISTS (SELECT 1 FROM unnest(q.categories) AS wanted(name)
                              WHERE NOT EXISTS (SELECT 1 FROM unnest(p.categories) AS category(name)
                                                WHERE lower(category.name) = lower(wanted.name)))
            """;
        var queries = JsonSerializer.Serialize(parsed.Select(pair => new
        {
            topic = pair.Key,
            words = pair.Value.Words,
            authors = pair.Value.Authors,
            categories = pair.Value.Categories,
        }));

        List<(long Id, string[] Authors, string[] Categories, double Trend)> papers;
        List<(string Topic, long PaperId, double Score)> words;
        await using (var connection = await dataSource.OpenConnectionAsync(cancellationToken))
        {
            papers = [.. await connection.QueryAsync<(long, string[], string[], double)>(
                new CommandDefinition(dayPapers, new { days = days.ToArray() }, cancellationToken: cancellationToken))];
            if (papers.Count == 0 || distinct.Count == 0)
            {
                return new DayHits([], null, []);
            }
            words = [.. await connection.QueryAsync<(string, long, double)>(
                new CommandDefinition(wordHits, new { days = days.ToArray(), queries }, cancellationToken: cancellationToken))];
        }
        var wordScores = words.GroupBy(row => row.Topic, StringComparer.Ordinal)
            .ToDictionary(group => group.Key, group => group.ToDictionary(row => row.PaperId, row => row.Score), StringComparer.Ordinal);

        Dictionary<long, float[]>? paperVectors = null;
        Dictionary<string, float[]> topicVectors = new(StringComparer.Ordinal);
        if (embedder.Enabled)
        {
            paperVectors = [];
            foreach (var day in days)
            {
                foreach (var (id, vector) in await embeddings.DayVectorsAsync(day, cancellationToken))
                {
                    paperVectors[id] = vector;
                }
            }
            topicVectors = await embeddings.TopicVectorsAsync(distinct, keepTopicVectors, cancellationToken);
        }
        var threshold = embedder.Threshold;
        var trendWeight = embedder.Enabled ? TrendWeightWithMeaning : 1;

        var hits = new Dictionary<string, TopicHit[]>(StringComparer.Ordinal);
        var found = new List<TopicHit>();
        foreach (var topic in distinct)
        {
            found.Clear();
            var topicWords = wordScores.GetValueOrDefault(topic);
            var topicVector = topicVectors.GetValueOrDefault(topic);
            var syntax = parsed[topic];
            for (var place = 0; place < papers.Count; place++)
            {
                var paper = papers[place];
                var cosine = topicVector is not null && paperVectors!.TryGetValue(paper.Id, out var paperVector)
                    ? TensorPrimitives.Dot(topicVector, paperVector)
                    : 0;
                if (topicWords is not null && topicWords.TryGetValue(paper.Id, out var wordScore))
                {
                    found.Add(new TopicHit(place, wordScore + MeaningWeight * cosine + trendWeight * paper.Trend, ByMeaning: false));
                }
                else if (cosine >= threshold && MeetsFilters(syntax, paper.Authors, paper.Categories))
                {
                    found.Add(new TopicHit(place, MeaningWeight * cosine + trendWeight * paper.Trend, ByMeaning: true));
                }
            }
            if (found.Count > 0)
            {
                hits[topic] = [.. found.OrderByDescending(hit => hit.Score).ThenBy(hit => papers[hit.Paper].Id)];
            }
        }
        return new DayHits([.. papers.Select(paper => paper.Id)], paperVectors is null ? null : [.. papers.Select(paper => paperVectors.GetValueOrDefault(paper.Id))], hits);
    }

    private static bool MeetsFilters(TopicSyntax syntax, string[] authors, string[] categories) =>
        !syntax.HasFilters
        || (syntax.Authors.All(wanted => authors.Any(author => string.Equals(Fold(author), Fold(wanted), StringComparison.Ordinal)))
            && syntax.Categories.All(wanted => categories.Contains(wanted, StringComparer.OrdinalIgnoreCase)));

    // The C# side of the SQL's lower(unaccent(...)) for the few papers matched by meaning.
    private static string Fold(string name) =>
        new([.. name.Normalize(NormalizationForm.FormD).Where(c => CharUnicodeInfo.GetUnicodeCategory(c) != UnicodeCategory.NonSpacingMark)
            .Select(char.ToLowerInvariant)]);

    /// <summary>Each active subscriber's liked and disliked papers, as vectors.</summary>
    private async Task<Dictionary<long, FeedbackExamples>> FeedbackAsync(
        NpgsqlConnection connection, string subscribers, long[]? subscriberIds, CancellationToken cancellationToken)
    {
        var sql = $"""
            SELECT f.subscriber_id, f.paper_id, f.liked FROM {subscribers}
            JOIN paper_feedback f ON f.subscriber_id = s.id
            WHERE s.status = 'active'
            """;
        var rows = (await connection.QueryAsync<(long SubscriberId, long PaperId, bool Liked)>(
            new CommandDefinition(sql, new { subscriberIds }, cancellationToken: cancellationToken))).ToList();
        var vectors = await embeddings.PaperVectorsAsync(rows.Select(row => row.PaperId).ToHashSet(), cancellationToken);
        var examples = new Dictionary<long, FeedbackExamples>();
        foreach (var row in rows)
        {
            ref var entry = ref CollectionsMarshal.GetValueRefOrAddDefault(examples, row.SubscriberId, out _);
            entry ??= new FeedbackExamples([], [], []);
            if (!row.Liked)
            {
                entry.DislikedIds.Add(row.PaperId);
            }
            if (vectors.TryGetValue(row.PaperId, out var vector))
            {
                (row.Liked ? entry.Liked : entry.Disliked).Add(vector);
            }
        }
        return examples;
    }
}
