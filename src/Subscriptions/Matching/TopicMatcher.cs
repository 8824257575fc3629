using System.Collections.Concurrent;
using System.Numerics.Tensors;
using System.Runtime.InteropServices;
using System.Text.Json;
using Dapper;
using Microsoft.Extensions.Options;
using Npgsql;
using Subscriptions.Meaning;

namespace Subscriptions.Matching;

/// <summary>
/// A paper in someone's list: how well it fits, the topics whose words it mentions (or whose
/// <c>author:</c>/<c>category:</c> filters it meets), and the topics it is only close to in meaning.
/// </summary>
internal sealed record PaperMatch(long PaperId, double Score, IReadOnlyList<string> Topics, IReadOnlyList<string> CloseTo);

/// <summary>One subscriber's capped, ranked list for the day.</summary>
internal sealed record SubscriberMatches(long SubscriberId, string Email, IReadOnlyList<PaperMatch> Papers);

/// <summary>A subscriber to match, as a slot's planner reads them: their topics in order, and the papers they already got.</summary>
internal sealed record SubscriberTopics(long Id, string Email, int MaxPapers, string[] Topics, long[] AlreadySent);

/// <summary>
/// Turns topics and a day's papers into ranked, capped, explained lists. The text search runs in
/// PostgreSQL once per distinct topic (thousands at most, against ~100 papers), and so does the
/// meaning: one cosine per distinct topic and paper, in memory. Combining those hits into each
/// subscriber's list never issues a query per subscriber: everyone's lists are one streamed pass over
/// all active subscribers' topics, and a slot's come a batch of subscribers at a time
/// (<see cref="ForDaysAsync"/>).
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

    // The sets of days whose papers and topic hits are kept (ForDaysAsync): a day's and a week's, with room for a few more
    // (`digest --date` of an earlier day). Each holds the hits of every topic its slots searched: tens of MB at 300,000 topics.
    private const int RecentDaysKept = 4;

    private readonly ConcurrentDictionary<string, DaysSearched> _recentDays = new(StringComparer.Ordinal);

    internal sealed record DayPaper(long Id, double Trend);

    /// <summary>Papers per list for subscribers who did not choose (<c>Digest:MaxPapers</c>).</summary>
    public int DefaultMaxPapers => options.Value.MaxPapers;

    /// <summary>The list one subscriber with these topics would get (the preview).</summary>
    public async Task<IReadOnlyList<PaperMatch>> MatchAsync(DateOnly day, IReadOnlyList<string> topics, int maxPapers, CancellationToken cancellationToken)
    {
        var papers = await DayPapersAsync([day], cancellationToken);
        var hits = await HitsAsync([day], papers, topics, keepTopicVectors: false, cancellationToken);
        return papers.Ranker().Rank(topics, hits, maxPapers, feedback: null, alreadySent: null);
    }

    /// <summary>
    /// Every active, unsuppressed subscriber's list for the day, capped at their papers-per-email (<c>Digest:MaxPapers</c> when unset),
    /// streamed in subscriber order; subscribers with no match are left out.
    /// </summary>
    public async IAsyncEnumerable<SubscriberMatches> MatchAllAsync(
        DateOnly day, [System.Runtime.CompilerServices.EnumeratorCancellation] CancellationToken cancellationToken)
    {
        var defaultMaxPapers = options.Value.MaxPapers;
        await using var connection = await dataSource.OpenConnectionAsync(cancellationToken);
        const string distinctTopics = """
            SELECT DISTINCT t.text FROM subscribers s JOIN topics t ON t.subscriber_id = s.id
            WHERE s.status = 'active' AND NOT EXISTS (SELECT 1 FROM suppressions x WHERE x.email = s.email_key)
            """;
        var topics = (await connection.QueryAsync<string>(new CommandDefinition(distinctTopics, cancellationToken: cancellationToken))).ToList();
        var papers = await DayPapersAsync([day], cancellationToken);
        var hits = await HitsAsync([day], papers, topics, keepTopicVectors: true, cancellationToken);
        if (hits.Count == 0)
        {
            yield break;
        }
        var feedback = papers.Vectors is null ? [] : await FeedbackAsync(connection, subscriberIds: null, cancellationToken);

        // Only the topics that found something are read back: a subscriber none of whose topics matched
        // does not appear at all.
        const string subscriberTopics = """
            SELECT s.id, s.email, coalesce(s.max_papers, @defaultMaxPapers), t.text
            FROM subscribers s
            JOIN topics t ON t.subscriber_id = s.id
            WHERE s.status = 'active' AND t.text = ANY(@matchingTopics)
              AND NOT EXISTS (SELECT 1 FROM suppressions x WHERE x.email = s.email_key)
            ORDER BY s.id, t.position
            """;
        // Left to itself the planner hashes both tables in parallel and sorts every row (spilling to disk) before
        // returning the first, while the lists below wait. A merge join along both primary keys returns the rows in
        // subscriber order from the first on, so the database reads while the lists are ranked. SET LOCAL: the settings
        // end with this read-only transaction, even where the pool does not reset connections (behind PgBouncer).
        await using var transaction = await connection.BeginTransactionAsync(cancellationToken);
        await connection.ExecuteAsync(new CommandDefinition(
            "SET LOCAL enable_sort = off; SET LOCAL max_parallel_workers_per_gather = 0; SET LOCAL jit = off",
            transaction: transaction, cancellationToken: cancellationToken));
        await using var command = new NpgsqlCommand(subscriberTopics, connection, transaction);
        command.Parameters.AddWithValue("defaultMaxPapers", defaultMaxPapers);
        command.Parameters.AddWithValue("matchingTopics", hits.Keys.ToArray());
        await using var reader = await command.ExecuteReaderAsync(System.Data.CommandBehavior.SequentialAccess, cancellationToken);

        var ranker = papers.Ranker();
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

        List<PaperMatch> Ranked(long id) => ranker.Rank(currentTopics, hits, currentMax, feedback.GetValueOrDefault(id), alreadySent: null);
    }

    /// <summary>
    /// Matching over the papers of <paramref name="days"/> (a paper listed on several counts with its best day's trend),
    /// a batch of subscribers at a time: the papers are read once, and each topic's hits when a batch first has it. Both are
    /// kept for the next call with the same days (the next slot) while the days' papers are unchanged.
    /// </summary>
    public async Task<BatchMatcher> ForDaysAsync(IReadOnlyList<DateOnly> days, CancellationToken cancellationToken)
    {
        // Slots match the same days 24 times a day; searching every topic again cost each slot ~50–90 ms, twice (daily and
        // weekly), at 200,000 subscribers.
        var key = string.Join(',', days.Order());
        var version = await DaysVersionAsync(days, cancellationToken);
        if (!_recentDays.TryGetValue(key, out var recent) || recent.Version != version)
        {
            recent = new DaysSearched(version, days.Max(), await DayPapersAsync(days, cancellationToken), new(StringComparer.Ordinal));
            // A newer day's papers supersede the sets that end before it: no slot after this one reads them again.
            foreach (var superseded in _recentDays.Where(entry => entry.Value.Latest < recent.Latest).Select(entry => entry.Key).ToList())
            {
                _recentDays.TryRemove(superseded, out _);
            }
            if (_recentDays.Count >= RecentDaysKept)
            {
                _recentDays.Clear();
            }
            _recentDays[key] = recent;
        }
        return new(this, days, recent.Papers, recent.Hits);
    }

    /// <summary>
    /// A set of days' papers, and the hits of every topic searched in them so far (an empty array for a topic with none),
    /// shared by the batch matchers of those days while <paramref name="Version"/> holds.
    /// </summary>
    private sealed record DaysSearched(string Version, DateOnly Latest, DayPapers Papers, ConcurrentDictionary<string, TopicHit[]> Hits);

    /// <summary>How many sets of days' searches are kept for the next slots.</summary>
    internal int DaySetsKept => _recentDays.Count;

    /// <summary>
    /// What the days' papers are made of, as far as matching reads it: their listings, their text and their meaning vectors,
    /// each row by its version (<c>xmin</c>, which every insert and update changes).
    /// </summary>
    private async Task<string> DaysVersionAsync(IReadOnlyList<DateOnly> days, CancellationToken cancellationToken)
    {
        const string sql = """
            SELECT md5(string_agg(concat_ws(':', d.day, d.source, d.paper_id, d.xmin, p.xmin, e.xmin), ',' ORDER BY d.day, d.source, d.paper_id))
            FROM paper_days d JOIN papers p ON p.id = d.paper_id LEFT JOIN paper_embeddings e ON e.paper_id = d.paper_id
            WHERE d.day = ANY(@days)
            """;
        await using var connection = await dataSource.OpenConnectionAsync(cancellationToken);
        return await connection.ExecuteScalarAsync<string>(new CommandDefinition(sql, new { days = days.ToArray() }, cancellationToken: cancellationToken)) ?? "";
    }

    /// <summary>Lists for batches of subscribers over one set of days; see <see cref="ForDaysAsync"/>.</summary>
    internal sealed class BatchMatcher
    {
        private readonly TopicMatcher _matcher;
        private readonly IReadOnlyList<DateOnly> _days;
        private readonly DayPapers _papers;
        private readonly ListRanker _ranker;
        private readonly ConcurrentDictionary<string, TopicHit[]> _hits;

        internal BatchMatcher(TopicMatcher matcher, IReadOnlyList<DateOnly> days, DayPapers papers, ConcurrentDictionary<string, TopicHit[]> hits)
        {
            _matcher = matcher;
            _days = days;
            _papers = papers;
            _ranker = papers.Ranker();
            _hits = hits;
        }

        /// <summary>
        /// Each subscriber's list, leaving out the papers they already got before the cap; subscribers with no match are left
        /// out. The caller has checked they are active and not suppressed.
        /// </summary>
        public async Task<List<SubscriberMatches>> MatchAsync(IReadOnlyList<SubscriberTopics> batch, CancellationToken cancellationToken)
        {
            var lists = new List<SubscriberMatches>(batch.Count);
            if (_papers.Ids.Length == 0)
            {
                return lists;
            }
            var unsearched = batch.SelectMany(subscriber => subscriber.Topics).Where(topic => !_hits.ContainsKey(topic)).Distinct(StringComparer.Ordinal).ToList();
            if (unsearched.Count > 0)
            {
                var found = await _matcher.HitsAsync(_days, _papers, unsearched, keepTopicVectors: true, cancellationToken);
                foreach (var topic in unsearched)
                {
                    _hits[topic] = found.GetValueOrDefault(topic, []);
                }
            }
            var feedback = _papers.Vectors is null ? [] : await _matcher.FeedbackAsync([.. batch.Select(subscriber => subscriber.Id)], cancellationToken);
            foreach (var subscriber in batch)
            {
                var ranked = _ranker.Rank(subscriber.Topics, _hits, subscriber.MaxPapers, feedback.GetValueOrDefault(subscriber.Id),
                    subscriber.AlreadySent);
                if (ranked.Count > 0)
                {
                    lists.Add(new SubscriberMatches(subscriber.Id, subscriber.Email, ranked));
                }
            }
            return lists;
        }
    }

    /// <summary>
    /// The days' papers, by their place (as <see cref="TopicHit.Paper"/> refers to them), with their meaning vectors in the
    /// same order (null when meaning is off).
    /// </summary>
    internal sealed record DayPapers(List<DayPaper> Papers, long[] Ids, float[]?[]? Vectors)
    {
        public ListRanker Ranker() => new(Ids, Vectors);
    }

    private async Task<DayPapers> DayPapersAsync(IReadOnlyList<DateOnly> days, CancellationToken cancellationToken)
    {
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
            SELECT id, trend FROM trending
            """;
        List<DayPaper> papers;
        await using (var connection = await dataSource.OpenConnectionAsync(cancellationToken))
        {
            papers = [.. await connection.QueryAsync<DayPaper>(
                new CommandDefinition(dayPapers, new { days = days.ToArray() }, cancellationToken: cancellationToken))];
        }
        float[]?[]? vectors = null;
        if (embedder.Enabled)
        {
            var byId = new Dictionary<long, float[]>();
            foreach (var day in days)
            {
                foreach (var (id, vector) in await embeddings.DayVectorsAsync(day, cancellationToken))
                {
                    byId[id] = vector;
                }
            }
            vectors = [.. papers.Select(paper => byId.GetValueOrDefault(paper.Id))];
        }
        return new DayPapers(papers, [.. papers.Select(paper => paper.Id)], vectors);
    }

    /// <summary>For each of <paramref name="topics"/> that matches any of the papers: its hits, best first.</summary>
    private async Task<Dictionary<string, TopicHit[]>> HitsAsync(
        IReadOnlyList<DateOnly> days, DayPapers day, IReadOnlyList<string> topics, bool keepTopicVectors, CancellationToken cancellationToken)
    {
        var distinct = topics.Distinct(StringComparer.Ordinal).ToList();
        var hits = new Dictionary<string, TopicHit[]>(StringComparer.Ordinal);
        if (day.Papers.Count == 0 || distinct.Count == 0)
        {
            return hits;
        }
        var parsed = distinct.ToDictionary(topic => topic, TopicSyntax.Parse, StringComparer.Ordinal);
        // A paper the words refuse for an excluded term comes back with the score -1, so that meaning cannot find it either.
        // With meaning on, a topic with filters also gets the papers that meet its filters without its words (the score null):
        // only those may meaning find for it. The filters are checked here alone, so that words and meaning agree on them.
        const string wordHits = """
            WITH queries AS (
                -- Words that leave no term ("the") are none: an empty query matches no paper, and the filters would go unused.
                SELECT topic, CASE WHEN words <> '' AND numnode(topic_query(words)) > 0 THEN topic_query(words) END AS query, filtered,
                       authors, categories, CASE WHEN exclusions <> '' AND numnode(topic_query(exclusions)) > 0 THEN topic_query(exclusions) END AS excluded
                FROM jsonb_to_recordset(@queries::jsonb) AS q(topic text, words text, filtered boolean, authors text[], categories text[], exclusions text)
            ), day_papers AS (
                SELECT DISTINCT p.id, p.search_vector, p.authors, p.categories
                FROM paper_days d JOIN papers p ON p.id = d.paper_id
                WHERE d.day = ANY(@days)
            ), filtered AS (
                -- Every author: and category: filter must hold: authors compare without case or accents, and a name of one
                -- word is a surname, which ends the author's name.
                SELECT q.topic, p.id FROM queries q JOIN day_papers p ON q.filtered
                WHERE NOT EXISTS (SELECT 1 FROM unnest(q.authors) AS wanted(name), lower(unaccent(wanted.name)) AS w(name)
                                  WHERE NOT EXISTS (SELECT 1 FROM unnest(p.authors) AS author(name), lower(unaccent(author.name)) AS a(name)
                                                    WHERE a.name = w.name
                                                       OR (strpos(w.name, ' ') = 0 AND right(a.name, length(w.name) + 1) = ' ' || w.name)))
                  AND NOT EXISTS (SELECT 1 FROM unnest(q.categories) AS wanted(name)
                                  WHERE NOT EXISTS (SELECT 1 FROM unnest(p.categories) AS category(name)
                                                    WHERE lower(category.name) = lower(wanted.name)))
            )
            SELECT q.topic, p.id,
                   CASE WHEN q.query IS NULL THEN 1
                        WHEN ts_filter(p.search_vector, '{a}') @@ q.query THEN 2 + ts_rank(p.search_vector, q.query)
                        ELSE 1 + ts_rank(p.search_vector, q.query) END AS score
            FROM queries q
            JOIN day_papers p ON (q.query IS NULL OR p.search_vector @@ q.query)
            WHERE NOT q.filtered OR EXISTS (SELECT 1 FROM filtered f WHERE f.topic = q.topic AND f.id = p.id)
            UNION ALL
            SELECT q.topic, p.id, -1 FROM queries q JOIN day_papers p ON q.excluded IS NOT NULL AND p.search_vector @@ q.excluded
            UNION ALL
            SELECT q.topic, p.id, NULL FROM queries q JOIN filtered f ON f.topic = q.topic JOIN day_papers p ON p.id = f.id
            WHERE @meaning AND q.query IS NOT NULL AND NOT p.search_vector @@ q.query
              AND NOT coalesce(p.search_vector @@ q.excluded, false)
            """;
        var queries = JsonSerializer.Serialize(parsed.Select(pair => new
        {
            topic = pair.Key,
            words = pair.Value.Words,
            filtered = pair.Value.HasFilters,
            authors = pair.Value.Authors,
            categories = pair.Value.Categories,
            exclusions = pair.Value.Exclusions,
        }));
        List<(string Topic, long PaperId, double? Score)> words;
        await using (var connection = await dataSource.OpenConnectionAsync(cancellationToken))
        {
            words = [.. await connection.QueryAsync<(string, long, double?)>(new CommandDefinition(
                wordHits, new { days = days.ToArray(), queries, meaning = day.Vectors is not null }, cancellationToken: cancellationToken))];
        }
        var wordScores = words.GroupBy(row => row.Topic, StringComparer.Ordinal)
            .ToDictionary(group => group.Key, group => group.ToDictionary(row => row.PaperId, row => row.Score), StringComparer.Ordinal);
        var topicVectors = day.Vectors is null
            ? new Dictionary<string, float[]>(StringComparer.Ordinal)
            : await embeddings.TopicVectorsAsync(distinct, keepTopicVectors, cancellationToken);
        var threshold = embedder.Threshold;
        var trendWeight = embedder.Enabled ? TrendWeightWithMeaning : 1;

        var found = new List<TopicHit>();
        foreach (var topic in distinct)
        {
            found.Clear();
            var topicWords = wordScores.GetValueOrDefault(topic);
            var topicVector = topicVectors.GetValueOrDefault(topic);
            var filtered = parsed[topic].HasFilters;
            for (var place = 0; place < day.Papers.Count; place++)
            {
                var paper = day.Papers[place];
                var cosine = topicVector is not null && day.Vectors![place] is { } paperVector
                    ? TensorPrimitives.Dot(topicVector, paperVector)
                    : 0;
                // No row: the words did not find the paper, and it fails the filters if the topic has any.
                double? wordScore = null;
                var listed = topicWords is not null && topicWords.TryGetValue(paper.Id, out wordScore);
                if (wordScore >= 0)
                {
                    found.Add(new TopicHit(place, wordScore.Value + MeaningWeight * cosine + trendWeight * paper.Trend, ByMeaning: false));
                }
                else if (wordScore is null && (listed || !filtered) && cosine >= threshold)
                {
                    found.Add(new TopicHit(place, MeaningWeight * cosine + trendWeight * paper.Trend, ByMeaning: true));
                }
            }
            if (found.Count > 0)
            {
                hits[topic] = [.. found.OrderByDescending(hit => hit.Score).ThenBy(hit => day.Ids[hit.Paper])];
            }
        }
        return hits;
    }

    private async Task<Dictionary<long, FeedbackExamples>> FeedbackAsync(long[] subscriberIds, CancellationToken cancellationToken)
    {
        await using var connection = await dataSource.OpenConnectionAsync(cancellationToken);
        return await FeedbackAsync(connection, subscriberIds, cancellationToken);
    }

    /// <summary>Each active subscriber's liked and disliked papers, as vectors; or those of <paramref name="subscriberIds"/>, whose status the caller checked.</summary>
    private async Task<Dictionary<long, FeedbackExamples>> FeedbackAsync(
        NpgsqlConnection connection, long[]? subscriberIds, CancellationToken cancellationToken)
    {
        var sql = subscriberIds is null
            ? """
              SELECT f.subscriber_id, f.paper_id, f.liked FROM subscribers s
              JOIN paper_feedback f ON f.subscriber_id = s.id
              WHERE s.status = 'active'
              """
            : "SELECT subscriber_id, paper_id, liked FROM paper_feedback WHERE subscriber_id = ANY(@subscriberIds)";
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
