using System.Text.Json;
using Dapper;
using Npgsql;

namespace Subscriptions.Papers;

/// <summary>What storing one source's list for a day did.</summary>
internal sealed record StoreResult(int New, int Updated, int Unchanged);

// Public, as the archive's Razor page that shows it is (a .razor component is always a public class).
public sealed class DayPaper
{
    public long Id { get; set; }
    public string? ArxivId { get; set; }
    public string Title { get; set; } = "";
    public string Abstract { get; set; } = "";
    public string[] Authors { get; set; } = [];
    public string? PageUrl { get; set; }
    public string? PdfUrl { get; set; }
    public string? GithubRepo { get; set; }
    public string? ProjectPage { get; set; }
    public DateTime? PublishedAt { get; set; }
    public int? Upvotes { get; set; }
    public int Rank { get; set; }
    public string[] Sources { get; set; } = [];
}

internal sealed class PaperStore(NpgsqlDataSource dataSource, TimeProvider time)
{
    private static readonly JsonSerializerOptions SnakeCase = new() { PropertyNamingPolicy = JsonNamingPolicy.SnakeCaseLower };

    /// <summary>
    /// Upserts the papers (by arXiv id, else title hash) and the source's list for the day, in one
    /// transaction and two set-based statements. Storing the same list again changes nothing.
    /// </summary>
    public async Task<StoreResult> SaveDayAsync(DateOnly day, string source, IReadOnlyList<PaperRecord> papers, CancellationToken cancellationToken)
    {
        if (papers.Count == 0)
        {
            return new StoreResult(0, 0, 0);
        }
        var rows = papers.Select((paper, index) => new
        {
            rank = index + 1,
            paper.Key,
            paper.ArxivId,
            paper.Title,
            paper.Abstract,
            paper.Authors,
            paper.PageUrl,
            paper.PdfUrl,
            paper.GithubRepo,
            paper.ProjectPage,
            paper.PublishedAt,
            paper.Upvotes,
            paper.Categories,
        });
        var parameters = new { papers = JsonSerializer.Serialize(rows, SnakeCase), day, source, now = time.GetUtcNow() };

        await using var connection = await dataSource.OpenConnectionAsync(cancellationToken);
        await using var transaction = await connection.BeginTransactionAsync(cancellationToken);

        // Papers whose text or links changed, or that are new; a paper seen before and unchanged is not touched.
        const string upsertPapers = """
            INSERT INTO papers AS existing (paper_key, arxiv_id, title, abstract, authors, page_url, pdf_url, github_repo,
                                            project_page, published_at, categories, created_at, updated_at)
            SELECT key, arxiv_id, title, abstract, authors, page_url, pdf_url, github_repo, project_page, published_at,
                   coalesce(categories, '{}'), @now, @now
            FROM jsonb_to_recordset(@papers::jsonb) AS p(key text, arxiv_id text, title text, abstract text, authors text[],
                 page_url text, pdf_url text, github_repo text, project_page text, published_at timestamptz, categories text[])
            ON CONFLICT (paper_key) DO UPDATE SET
                title = EXCLUDED.title,
                abstract = CASE WHEN EXCLUDED.abstract = '' THEN existing.abstract ELSE EXCLUDED.abstract END,
                authors = CASE WHEN cardinality(EXCLUDED.authors) = 0 THEN existing.authors ELSE EXCLUDED.authors END,
                page_url = COALESCE(existing.page_url, EXCLUDED.page_url),
                pdf_url = COALESCE(existing.pdf_url, EXCLUDED.pdf_url),
                github_repo = COALESCE(EXCLUDED.github_repo, existing.github_repo),
                project_page = COALESCE(EXCLUDED.project_page, existing.project_page),
                published_at = COALESCE(existing.published_at, EXCLUDED.published_at),
                categories = CASE WHEN cardinality(EXCLUDED.categories) = 0 THEN existing.categories ELSE EXCLUDED.categories END,
                updated_at = EXCLUDED.updated_at
            WHERE existing.title IS DISTINCT FROM EXCLUDED.title
               OR (EXCLUDED.abstract <> '' AND existing.abstract IS DISTINCT FROM EXCLUDED.abstract)
               OR (cardinality(EXCLUDED.authors) > 0 AND existing.authors IS DISTINCT FROM EXCLUDED.authors)
               OR (existing.page_url IS NULL AND EXCLUDED.page_url IS NOT NULL)
               OR (existing.pdf_url IS NULL AND EXCLUDED.pdf_url IS NOT NULL)
               OR (EXCLUDED.github_repo IS NOT NULL AND existing.github_repo IS DISTINCT FROM EXCLUDED.github_repo)
               OR (EXCLUDED.project_page IS NOT NULL AND existing.project_page IS DISTINCT FROM EXCLUDED.project_page)
               OR (existing.published_at IS NULL AND EXCLUDED.published_at IS NOT NULL)
               OR (cardinality(EXCLUDED.categories) > 0 AND existing.categories IS DISTINCT FROM EXCLUDED.categories)
            RETURNING paper_key
            """;
        var changedPapers = (await connection.QueryAsync<string>(
            new CommandDefinition(upsertPapers, parameters, transaction, cancellationToken: cancellationToken))).ToHashSet();

        // The day's list: the trending signal of each paper; ingesting the day later updates the upvotes.
        const string upsertDay = """
            INSERT INTO paper_days AS existing (day, source, paper_id, upvotes, rank, fetched_at)
            SELECT @day, @source, papers.id, p.upvotes, p.rank, @now
            FROM jsonb_to_recordset(@papers::jsonb) AS p(key text, upvotes integer, rank integer)
            JOIN papers ON papers.paper_key = p.key
            ON CONFLICT (day, source, paper_id) DO UPDATE SET
                upvotes = EXCLUDED.upvotes, rank = EXCLUDED.rank, fetched_at = EXCLUDED.fetched_at
            WHERE (existing.upvotes, existing.rank) IS DISTINCT FROM (EXCLUDED.upvotes, EXCLUDED.rank)
            RETURNING (SELECT paper_key FROM papers WHERE papers.id = existing.paper_id) AS key, (xmax = 0) AS inserted
            """;
        var changedDays = (await connection.QueryAsync<(string Key, bool Inserted)>(
            new CommandDefinition(upsertDay, parameters, transaction, cancellationToken: cancellationToken))).ToList();
        await transaction.CommitAsync(cancellationToken);

        var added = changedDays.Where(row => row.Inserted).Select(row => row.Key).ToHashSet();
        var updated = changedDays.Where(row => !row.Inserted).Select(row => row.Key).Concat(changedPapers).Where(key => !added.Contains(key)).ToHashSet();
        return new StoreResult(added.Count, updated.Count, papers.Count - added.Count - updated.Count);
    }

    /// <summary>The papers that trended on the day, by any source, in trending order: upvotes, then rank.</summary>
    public async Task<IReadOnlyList<DayPaper>> PapersOfDayAsync(DateOnly day, CancellationToken cancellationToken)
    {
        const string sql = """
            SELECT p.id, p.arxiv_id, p.title, p.abstract, p.authors, p.page_url, p.pdf_url, p.github_repo, p.project_page, p.published_at,
                   max(d.upvotes) AS upvotes, min(d.rank) AS rank, array_agg(d.source ORDER BY d.source) AS sources
            FROM paper_days d
            JOIN papers p ON p.id = d.paper_id
            WHERE d.day = @day
            GROUP BY p.id
            ORDER BY max(d.upvotes) DESC NULLS LAST, min(d.rank), p.id
            """;
        await using var connection = await dataSource.OpenConnectionAsync(cancellationToken);
        return [.. await connection.QueryAsync<DayPaper>(new CommandDefinition(sql, new { day }, cancellationToken: cancellationToken))];
    }

    /// <summary>Every day with papers, newest first, with how many.</summary>
    public async Task<IReadOnlyList<(DateOnly Day, int Count)>> DaysAsync(CancellationToken cancellationToken)
    {
        const string sql = "SELECT day, count(DISTINCT paper_id)::int FROM paper_days GROUP BY day ORDER BY day DESC";
        await using var connection = await dataSource.OpenConnectionAsync(cancellationToken);
        return [.. await connection.QueryAsync<(DateOnly, int)>(new CommandDefinition(sql, cancellationToken: cancellationToken))];
    }

    /// <summary>The sources that have a list stored for the day.</summary>
    public async Task<IReadOnlyList<string>> SourcesOfDayAsync(DateOnly day, CancellationToken cancellationToken)
    {
        await using var connection = await dataSource.OpenConnectionAsync(cancellationToken);
        return [.. await connection.QueryAsync<string>(new CommandDefinition(
            "SELECT DISTINCT source FROM paper_days WHERE day = @day", new { day }, cancellationToken: cancellationToken))];
    }

    /// <summary>The most recent day that has any papers, if any.</summary>
    public async Task<DateOnly?> LatestDayAsync(CancellationToken cancellationToken)
    {
        await using var connection = await dataSource.OpenConnectionAsync(cancellationToken);
        return await connection.ExecuteScalarAsync<DateOnly?>(
            new CommandDefinition("SELECT max(day) FROM paper_days", cancellationToken: cancellationToken));
    }
}
