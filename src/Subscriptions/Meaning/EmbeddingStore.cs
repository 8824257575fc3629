using System.Collections.Concurrent;
using Dapper;
using Npgsql;

namespace Subscriptions.Meaning;

/// <summary>
/// The vectors of papers (<c>paper_embeddings</c>) and of topic texts (<c>topic_embeddings</c>), made by the
/// configured model. A vector made by another model counts as missing. Nothing here runs when meaning is off.
/// </summary>
internal sealed class EmbeddingStore(NpgsqlDataSource dataSource, TextEmbedder embedder, ILogger<EmbeddingStore> logger)
{
    // Papers are embedded this many at a time, so a re-embedding of thousands commits as it goes.
    private const int PaperBatch = 256;

    // Topic texts this process has seen stored with a vector of its model (or that have no meaning to embed), so that a
    // signup with topics already known (most signups) does not ask the database again. A row deleted meanwhile (its last
    // follower erased their data), or given another model's vector by another instance, only means the topic is embedded
    // when the day is matched instead of ahead of it. Bounded: once full, it starts again empty.
    private const int KnownTopicsLimit = 100_000;
    private readonly ConcurrentDictionary<string, bool> _knownTopics = new(StringComparer.Ordinal);

    // Papers are embedded by one caller at a time in this process. A day without vectors of the model (a new model before
    // `embed` ran) was embedded anew by every preview of it that came before the first had stored its vectors, each
    // holding the model's memory for a batch: twenty concurrent previews, twenty times the work.
    private readonly SemaphoreSlim _embeddingPapers = new(1, 1);

    /// <summary>Embeds the papers listed on the day that have no vector of the current model yet; returns how many.</summary>
    public async Task<int> EmbedDayAsync(DateOnly day, CancellationToken cancellationToken)
    {
        const string sql = """
            SELECT p.id, p.title, p.abstract FROM papers p
            WHERE p.id IN (SELECT paper_id FROM paper_days WHERE day = @day)
              AND NOT EXISTS (SELECT 1 FROM paper_embeddings e WHERE e.paper_id = p.id AND e.model = @model)
            ORDER BY p.id
            """;
        return await EmbedPapersAsync(sql, new { day }, cancellationToken);
    }

    /// <summary>
    /// The embed verb: every paper and every subscriber's topic without a vector of the current model (or all, when
    /// <paramref name="all"/>), <paramref name="pageSize"/> at a time, so that three years of papers are neither read into
    /// memory at once nor embedded without a word for half an hour: <paramref name="progress"/> hears of each page.
    /// </summary>
    public async Task<(int Papers, int Topics)> EmbedStaleAsync(bool all, Action<string> progress, CancellationToken cancellationToken, int pageSize = 1024)
    {
        var model = embedder.ModelName;
        const string stalePapers = "@all OR NOT EXISTS (SELECT 1 FROM paper_embeddings e WHERE e.paper_id = p.id AND e.model = @model)";
        const string staleTopics = "@all OR NOT EXISTS (SELECT 1 FROM topic_embeddings e WHERE e.topic = t.text AND e.model = @model)";
        const string countPapers = $"SELECT count(*) FROM papers p WHERE {stalePapers}";
        const string pageOfPapers = $"SELECT p.id, p.title, p.abstract FROM papers p WHERE p.id > @after AND ({stalePapers}) ORDER BY p.id LIMIT @pageSize";
        const string countTopics = $"SELECT count(DISTINCT t.text) FROM topics t WHERE {staleTopics}";
        const string pageOfTopics = $"SELECT DISTINCT t.text FROM topics t WHERE t.text > @after AND ({staleTopics}) ORDER BY t.text LIMIT @pageSize";
        await using var connection = await dataSource.OpenConnectionAsync(cancellationToken);
        var paperTotal = await connection.ExecuteScalarAsync<long>(new CommandDefinition(
            countPapers, new { all, model }, cancellationToken: cancellationToken));
        var papers = 0;
        for (long after = 0; ;)
        {
            List<(long Id, string Title, string Abstract)> page = [.. await connection.QueryAsync<(long, string, string)>(new CommandDefinition(
                pageOfPapers, new { after, all, model, pageSize }, cancellationToken: cancellationToken))];
            if (page.Count == 0)
            {
                break;
            }
            papers += await EmbedPapersAsync(page, model, cancellationToken);
            after = page[^1].Id;
            progress($"Papers: {papers:N0} of {paperTotal:N0} embedded");
        }

        var topicTotal = await connection.ExecuteScalarAsync<long>(new CommandDefinition(
            countTopics, new { all, model }, cancellationToken: cancellationToken));
        var topics = 0;
        for (var after = ""; ;)
        {
            List<string> page = [.. await connection.QueryAsync<string>(new CommandDefinition(
                pageOfTopics, new { after, all, model, pageSize }, cancellationToken: cancellationToken))];
            if (page.Count == 0)
            {
                break;
            }
            foreach (var chunk in page.Chunk(PaperBatch))
            {
                await SaveTopicsAsync(chunk, embedder.Embed([.. chunk.Select(TopicSyntax.MeaningOf)], cancellationToken), cancellationToken);
            }
            topics += page.Count;
            after = page[^1];
            progress($"Topics: {topics:N0} of {topicTotal:N0} embedded");
        }
        return (papers, topics);
    }

    /// <summary>
    /// Embeds the papers <paramref name="sql"/> lists. It lists them before waiting its turn too, so that a caller with
    /// nothing missing (most) does not wait for another's embedding.
    /// </summary>
    private async Task<int> EmbedPapersAsync(string sql, object parameters, CancellationToken cancellationToken)
    {
        var model = embedder.ModelName;
        var arguments = new DynamicParameters(parameters);
        arguments.Add("model", model);
        async Task<List<(long Id, string Title, string Abstract)>> PapersAsync()
        {
            await using var connection = await dataSource.OpenConnectionAsync(cancellationToken);
            return [.. await connection.QueryAsync<(long, string, string)>(new CommandDefinition(sql, arguments, cancellationToken: cancellationToken))];
        }
        if ((await PapersAsync()).Count == 0)
        {
            return 0; // the usual case, without waiting for another caller's embedding
        }
        await _embeddingPapers.WaitAsync(cancellationToken);
        try
        {
            // Asked (again) once it is this caller's turn: what the one before embedded is not missing any more.
            var embedded = await EmbedPapersAsync(await PapersAsync(), model, cancellationToken);
            if (embedded > 0)
            {
                logger.LogInformation("Embedded {Count} papers with {Model}", embedded, model);
            }
            return embedded;
        }
        finally
        {
            _embeddingPapers.Release();
        }
    }

    private async Task<int> EmbedPapersAsync(List<(long Id, string Title, string Abstract)> papers, string model, CancellationToken cancellationToken)
    {
        foreach (var chunk in papers.Chunk(PaperBatch))
        {
            var vectors = embedder.Embed([.. chunk.Select(paper => TextEmbedder.PaperText(paper.Title, paper.Abstract))], cancellationToken);
            const string upsert = """
                INSERT INTO paper_embeddings (paper_id, model, vector)
                SELECT id, @model, vector FROM jsonb_to_recordset(@rows::jsonb) AS r(id bigint, vector real[])
                ON CONFLICT (paper_id) DO UPDATE SET model = EXCLUDED.model, vector = EXCLUDED.vector
                """;
            var rows = System.Text.Json.JsonSerializer.Serialize(chunk.Select((paper, i) => new { id = paper.Id, vector = vectors[i] }));
            await using var connection = await dataSource.OpenConnectionAsync(cancellationToken);
            await connection.ExecuteAsync(new CommandDefinition(upsert, new { model, rows }, cancellationToken: cancellationToken));
        }
        return papers.Count;
    }

    /// <summary>The vectors of the day's papers, embedding any that are missing first.</summary>
    public async Task<Dictionary<long, float[]>> DayVectorsAsync(DateOnly day, CancellationToken cancellationToken)
    {
        await EmbedDayAsync(day, cancellationToken);
        const string sql = """
            SELECT e.paper_id, e.vector FROM paper_embeddings e
            WHERE e.model = @model AND e.paper_id IN (SELECT paper_id FROM paper_days WHERE day = @day)
            """;
        await using var connection = await dataSource.OpenConnectionAsync(cancellationToken);
        var rows = await connection.QueryAsync<(long Id, float[] Vector)>(
            new CommandDefinition(sql, new { day, model = embedder.ModelName }, cancellationToken: cancellationToken));
        return rows.ToDictionary(row => row.Id, row => row.Vector);
    }

    /// <summary>The vectors of these papers (feedback examples), embedding any that are missing first.</summary>
    public async Task<Dictionary<long, float[]>> PaperVectorsAsync(IReadOnlyCollection<long> ids, CancellationToken cancellationToken)
    {
        if (ids.Count == 0)
        {
            return [];
        }
        const string missing = """
            SELECT p.id, p.title, p.abstract FROM papers p
            WHERE p.id = ANY(@ids) AND NOT EXISTS (SELECT 1 FROM paper_embeddings e WHERE e.paper_id = p.id AND e.model = @model)
            ORDER BY p.id
            """;
        await EmbedPapersAsync(missing, new { ids = ids.ToArray() }, cancellationToken);
        const string sql = "SELECT paper_id, vector FROM paper_embeddings WHERE model = @model AND paper_id = ANY(@ids)";
        await using var connection = await dataSource.OpenConnectionAsync(cancellationToken);
        var rows = await connection.QueryAsync<(long Id, float[] Vector)>(
            new CommandDefinition(sql, new { ids = ids.ToArray(), model = embedder.ModelName }, cancellationToken: cancellationToken));
        return rows.ToDictionary(row => row.Id, row => row.Vector);
    }

    /// <summary>
    /// The vector of each topic that has a meaning (not only <c>author:</c>/<c>category:</c> filters): stored ones are read,
    /// missing ones embedded, and kept when <paramref name="keep"/> (subscribers' topics, not a passer-by's preview).
    /// </summary>
    public async Task<Dictionary<string, float[]>> TopicVectorsAsync(IReadOnlyCollection<string> topics, bool keep, CancellationToken cancellationToken)
    {
        var meaningful = topics.Where(topic => TopicSyntax.MeaningOf(topic).Length > 0).Distinct(StringComparer.Ordinal).ToArray();
        if (meaningful.Length == 0)
        {
            return new Dictionary<string, float[]>(StringComparer.Ordinal);
        }
        const string sql = "SELECT topic, vector FROM topic_embeddings WHERE model = @model AND topic = ANY(@topics)";
        Dictionary<string, float[]> vectors;
        await using (var connection = await dataSource.OpenConnectionAsync(cancellationToken))
        {
            var rows = await connection.QueryAsync<(string Topic, float[] Vector)>(
                new CommandDefinition(sql, new { topics = meaningful, model = embedder.ModelName }, cancellationToken: cancellationToken));
            vectors = rows.ToDictionary(row => row.Topic, row => row.Vector, StringComparer.Ordinal);
        }
        var missing = meaningful.Where(topic => !vectors.ContainsKey(topic)).ToArray();
        if (missing.Length > 0)
        {
            var made = embedder.Embed([.. missing.Select(TopicSyntax.MeaningOf)], cancellationToken);
            for (var i = 0; i < missing.Length; i++)
            {
                vectors[missing[i]] = made[i];
            }
            if (keep)
            {
                await SaveTopicsAsync(missing, made, cancellationToken);
            }
        }
        return vectors;
    }

    /// <summary>Embeds the topics a subscriber just saved (those no one had typed before), so the day's run finds them ready.</summary>
    public async Task EmbedTopicsAsync(IReadOnlyCollection<string> topics, CancellationToken cancellationToken)
    {
        if (!embedder.Enabled)
        {
            return;
        }
        var unknown = topics.Where(topic => !_knownTopics.ContainsKey(topic)).ToArray();
        if (unknown.Length == 0)
        {
            return;
        }
        await TopicVectorsAsync(unknown, keep: true, cancellationToken);
        if (_knownTopics.Count + unknown.Length > KnownTopicsLimit)
        {
            _knownTopics.Clear();
        }
        foreach (var topic in unknown)
        {
            _knownTopics.TryAdd(topic, true);
        }
    }

    private async Task SaveTopicsAsync(IReadOnlyList<string> topics, float[][] vectors, CancellationToken cancellationToken)
    {
        const string upsert = """
            INSERT INTO topic_embeddings (topic, model, vector)
            SELECT topic, @model, vector FROM jsonb_to_recordset(@rows::jsonb) AS r(topic text, vector real[])
            ON CONFLICT (topic) DO UPDATE SET model = EXCLUDED.model, vector = EXCLUDED.vector
            """;
        var rows = System.Text.Json.JsonSerializer.Serialize(topics.Select((topic, i) => new { topic, vector = vectors[i] }));
        await using var connection = await dataSource.OpenConnectionAsync(cancellationToken);
        await connection.ExecuteAsync(new CommandDefinition(upsert, new { model = embedder.ModelName, rows }, cancellationToken: cancellationToken));
    }
}
