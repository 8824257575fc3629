using System.ServiceModel.Syndication;
using System.Text;
using System.Xml;
using Dapper;
using Microsoft.AspNetCore.Http.HttpResults;
using Microsoft.Extensions.Options;
using Npgsql;

using Subscriptions.Infrastructure;

namespace Subscriptions.Subscribers;

/// <summary>
/// <c>GET /feed?token=</c>: a subscriber's own Atom feed (RFC 4287) of the papers planned for them in the last
/// 30 days, each saying which of their topics matched. It works while the subscription is active; any other
/// token gets a bare 404.
/// </summary>
internal static class FeedEndpoints
{
    public static readonly TimeSpan Window = TimeSpan.FromDays(30);

    public static IEndpointRouteBuilder MapFeed(this IEndpointRouteBuilder endpoints)
    {
        endpoints.MapGet("/feed", GetFeedAsync);
        return endpoints;
    }

    private static async Task<Results<FileContentHttpResult, NotFound>> GetFeedAsync(
        string? token, LinkTokens tokens, NpgsqlDataSource dataSource, IOptions<AppOptions> app, TimeProvider time, CancellationToken cancellationToken)
    {
        if (!tokens.TryRead(LinkPurpose.Feed, token, out var link))
        {
            return TypedResults.NotFound();
        }
        await using var connection = await dataSource.OpenConnectionAsync(cancellationToken);
        var subscriber = await connection.QuerySingleOrDefaultAsync<(long Id, string Email)?>(new CommandDefinition("""
            SELECT id, email FROM subscribers WHERE id = @SubscriberId AND subscription_key = @Nonce AND status = 'active'
            """, link, cancellationToken: cancellationToken));
        if (subscriber is not { } found)
        {
            return TypedResults.NotFound();
        }

        // Each paper once (a subscriber is never planned a paper twice), with the delivery that carried it, and the day it was
        // listed on (deliveries planned before slots have none: theirs), which is not the delivery's local date east of the operator.
        const string sql = """
            SELECT p.id, p.title, p.abstract, p.authors, p.page_url, p.pdf_url, coalesce((e.value ->> 'day')::date, d.day) AS listed_on, d.created_at, d.sent_at,
                   array(SELECT jsonb_array_elements_text(e.value -> 'topics')) AS topics
            FROM deliveries d
            CROSS JOIN LATERAL jsonb_array_elements(d.papers) AS e(value)
            JOIN papers p ON p.id = (e.value ->> 'paper_id')::bigint
            WHERE d.subscriber_id = @id AND d.day >= @since AND d.status IN ('pending', 'sending', 'sent')
            ORDER BY d.day DESC, d.id, p.id
            """;
        var now = time.GetUtcNow();
        var rows = (await connection.QueryAsync<FeedRow>(new CommandDefinition(sql,
            new { id = found.Id, since = DateOnly.FromDateTime(now.UtcDateTime - Window) }, cancellationToken: cancellationToken))).ToList();

        var options = app.Value;
        var host = new Uri(options.BaseUrl).Host;
        var self = tokens.Link(LinkPurpose.Feed, found.Id, link.Nonce);
        var feed = new SyndicationFeed(
            "Trending papers on your topics", $"The papers matched for {found.Email} in the last {Window.TotalDays:0} days",
            options.Link("/"), $"tag:{host},2026:feed/{found.Id}", rows.Count > 0 ? rows.Max(Updated) : now);
        feed.Links.Add(SyndicationLink.CreateSelfLink(self, "application/atom+xml"));
        feed.Authors.Add(new SyndicationPerson { Name = "Trending Papers" });
        feed.Items = rows.Select(row =>
        {
            var url = row.PageUrl ?? row.PdfUrl ?? options.Link($"/papers/{row.ListedOn:yyyy-MM-dd}").AbsoluteUri;
            // Text stored by earlier versions may hold characters XML cannot (the writer threw: a 500 for 30 days).
            var topics = row.Topics.Select(XmlChars.WithoutInvalidCharacters).ToList();
            var matched = $"Matched your topic{(topics.Count == 1 ? "" : "s")}: {string.Join(", ", topics)}.";
            var item = new SyndicationItem
            {
                Id = $"tag:{host},2026:paper/{row.Id}",
                Title = new TextSyndicationContent(XmlChars.WithoutInvalidCharacters(row.Title)),
                Summary = new TextSyndicationContent(XmlChars.WithoutInvalidCharacters($"{matched}\n\n{row.Abstract}")),
                LastUpdatedTime = Updated(row),
                PublishDate = Updated(row),
            };
            item.Links.Add(SyndicationLink.CreateAlternateLink(new Uri(url)));
            foreach (var author in row.Authors.Take(20))
            {
                item.Authors.Add(new SyndicationPerson { Name = XmlChars.WithoutInvalidCharacters(author) });
            }
            foreach (var topic in topics)
            {
                item.Categories.Add(new SyndicationCategory(topic));
            }
            return item;
        }).ToList();

        using var buffer = new MemoryStream();
        using (var writer = XmlWriter.Create(buffer, new XmlWriterSettings { Encoding = new UTF8Encoding(false), Indent = true }))
        {
            new Atom10FeedFormatter(feed).WriteTo(writer);
        }
        return TypedResults.File(buffer.ToArray(), "application/atom+xml; charset=utf-8");
    }

    private static DateTimeOffset Updated(FeedRow row) => new(DateTime.SpecifyKind(row.SentAt ?? row.CreatedAt, DateTimeKind.Utc));

    private sealed class FeedRow
    {
        public long Id { get; set; }
        public string Title { get; set; } = "";
        public string Abstract { get; set; } = "";
        public string[] Authors { get; set; } = [];
        public string? PageUrl { get; set; }
        public string? PdfUrl { get; set; }
        public DateOnly ListedOn { get; set; }
        public DateTime CreatedAt { get; set; }
        public DateTime? SentAt { get; set; }
        public string[] Topics { get; set; } = [];
    }
}
