using System.Globalization;
using System.Text;
using Microsoft.Extensions.ObjectPool;
using Microsoft.Extensions.Options;
using MimeKit;
using Subscriptions.Email;
using Subscriptions.Infrastructure;
using Subscriptions.Matching;
using Subscriptions.Papers;
using Subscriptions.Subscribers;

namespace Subscriptions.Digest;

/// <summary>
/// The daily email: multipart/alternative (HTML and plain text), one column, inline CSS, no scripts. The HTML is ASCII
/// (character references for the rest), so that a DKIM-signed email need not encode it as quoted-printable.
/// </summary>
internal sealed class DigestEmails(IOptions<MailOptions> mail, IOptions<AppOptions> app, LinkTokens tokens, MessageIds messageIds, TimeProvider time)
{
    private const int AbstractLength = 320;
    private const int AuthorsShown = 3;
    private static readonly System.Runtime.CompilerServices.ConditionalWeakTable<DayPaper, RenderedPaper> RenderedPapers = new();

    // A digest's text is ~7,000 characters and its HTML ~15,000: the builders are kept and reused rather than grown anew.
    private static readonly ObjectPool<StringBuilder> Builders = new DefaultObjectPoolProvider().CreateStringBuilderPool(16 * 1024, 64 * 1024);

    /// <summary>The email of one delivery; its Message-ID comes from the delivery, so a re-send after a crash repeats it.</summary>
    public MimeMessage Render(
        long deliveryId, string email, long subscriberId, byte[] subscriptionKey, DateOnly day, IReadOnlyList<PlannedPaper> planned,
        IReadOnlyDictionary<long, DayPaper> papers)
    {
        // One preferences token for the preferences link and every feedback link (each would otherwise make it anew).
        var preferencesToken = tokens.Create(LinkPurpose.Preferences, subscriberId, subscriptionKey);
        var items = planned.Where(p => papers.ContainsKey(p.PaperId)).Select(p => new Item(papers[p.PaperId], MatchReasons.Describe(p.Topics, p.CloseTo),
            tokens.FeedbackLink(preferencesToken, p.PaperId, more: true), tokens.FeedbackLink(preferencesToken, p.PaperId, more: false))).ToList();
        var topics = planned.Where(p => papers.ContainsKey(p.PaperId)).SelectMany(p => p.Topics.Concat(p.CloseTo ?? []))
            .Distinct(StringComparer.OrdinalIgnoreCase).ToList();
        var unsubscribe = tokens.Link(LinkPurpose.Unsubscribe, subscriberId, subscriptionKey);
        var preferences = tokens.Link(LinkPurpose.Preferences, preferencesToken);
        var links = new FooterLinks(preferences, unsubscribe, tokens.Link(LinkPurpose.Feed, subscriberId, subscriptionKey),
            app.Value.Link($"/papers/{planned.Select(p => p.Day ?? day).DefaultIfEmpty(day).Max():yyyy-MM-dd}"));
        var date = day.ToString("d MMM yyyy", CultureInfo.InvariantCulture);

        var text = Builders.Get();
        var html = Builders.Get();
        MultipartAlternative body;
        try
        {
            // The parts BodyBuilder would make (text/plain and text/html in UTF-8), straight from the builders.
            body = [Utf8TextPart.FromText("plain", Text(text, items, topics, email, date, links)), Utf8TextPart.FromText("html", HtmlBody(html, items, topics, email, date, links))];
        }
        finally
        {
            Builders.Return(text);
            Builders.Return(html);
        }
        var message = MailEnvelope.Create(mail.Value, time.GetUtcNow(), email,
            $"{items.Count} trending paper{(items.Count == 1 ? "" : "s")} on {SubjectTopics(topics)} — {date}", body,
            messageIds.ForDelivery(deliveryId, day));

        // RFC 2369 and RFC 8058: mail clients show an unsubscribe button that POSTs to the link. RFC 8058's one-click needs an
        // HTTPS link; over plain HTTP the header would offer what receivers must not use.
        var listUnsubscribe = $"<{unsubscribe.AbsoluteUri}>";
        if (!string.IsNullOrEmpty(mail.Value.UnsubscribeMailto))
        {
            listUnsubscribe += $", <mailto:{mail.Value.UnsubscribeMailto}?subject=unsubscribe>";
        }
        message.Headers.Add("List-Unsubscribe", listUnsubscribe);
        if (unsubscribe.Scheme == Uri.UriSchemeHttps)
        {
            message.Headers.Add("List-Unsubscribe-Post", "List-Unsubscribe=One-Click");
        }
        message.Headers.Add("List-Id", $"Daily trending papers <daily-papers.{message.From.Mailboxes.Single().Domain}>");
        return message;
    }

    private static string SubjectTopics(List<string> topics) =>
        topics.Count <= 3 ? string.Join(", ", topics) : $"{string.Join(", ", topics.Take(3))} and {topics.Count - 3} more";

    private static StringBuilder Text(
        StringBuilder text, List<Item> items, List<string> topics, string email, string date, FooterLinks links)
    {
        text.Append(CultureInfo.InvariantCulture, $"Trending papers on your topics — {date}\n\n");
        var number = 0;
        foreach (var (paper, why, more, less) in items)
        {
            text.Append(CultureInfo.InvariantCulture, $"{++number}. ").Append(Rendered(paper).Text)
                .Append("   Why: ").Append(why).Append('\n')
                .Append("   More like this: ").Append(more).Append('\n')
                .Append("   Less like this: ").Append(less).Append("\n\n");
        }
        text.Append(CultureInfo.InvariantCulture, $"""
            --
            You get this because {email} subscribed to daily trending papers on: {string.Join(", ", topics)}.
            View this on the web: {links.Archive}
            Your feed (Atom): {links.Feed}
            Change your topics, time or frequency: {links.Preferences}
            Unsubscribe: {links.Unsubscribe}

            """);
        return text;
    }

    // Its last line ends in a line break too, so that the part goes on the wire as it is (Utf8TextPart).
    private static StringBuilder HtmlBody(
        StringBuilder page, List<Item> items, List<string> topics, string email, string date, FooterLinks links) =>
        Html.Document(page, $"Trending papers — {date}", html =>
        {
            html.Append("<table role=\"presentation\" width=\"100%\" cellspacing=\"0\" cellpadding=\"0\" style=\"border-collapse:collapse\">\n");
            foreach (var (paper, why, more, less) in items)
            {
                html.Append(Rendered(paper).Html)
                    .Append("<div style=\"color:#555;font-size:0.85em\">Why: ").AppendEncoded(why)
                    .Append(" &#183; <a href=\"").AppendEncoded(more).Append("\" style=\"color:#555\">more like this</a>")
                    .Append(" &#183; <a href=\"").AppendEncoded(less).Append("\" style=\"color:#555\">less like this</a>")
                    .Append("</div>\n</td></tr>\n");
            }
            html.Append(CultureInfo.InvariantCulture, $"""
                </table>
                <p style="color:#555;font-size:0.85em;margin-top:24px">You get this because {Html.Encode(email)} subscribed to daily trending papers on:
                {Html.Encode(string.Join(", ", topics))}.<br>
                <a href="{Html.Encode(links.Archive.AbsoluteUri)}" style="color:#555">View this on the web</a> &#183;
                <a href="{Html.Encode(links.Feed.AbsoluteUri)}" style="color:#555">Your feed</a> &#183;
                <a href="{Html.Encode(links.Preferences.AbsoluteUri)}" style="color:#555">Change your topics</a> &#183;
                <a href="{Html.Encode(links.Unsubscribe.AbsoluteUri)}" style="color:#555">Unsubscribe</a></p>
                """);
        }).Append('\n');

    /// <summary>
    /// A paper's part of the email is the same for everyone who gets it, but for the topics that
    /// matched; it is rendered once per paper and reused.
    /// </summary>
    private static RenderedPaper Rendered(DayPaper paper) => RenderedPapers.GetValue(paper, Render);

    private static RenderedPaper Render(DayPaper paper)
    {
        var byline = string.Join(" · ", new[] { Authors(paper.Authors), paper.Upvotes is { } upvotes ? $"{upvotes} upvotes" : "" }.Where(part => part.Length > 0));
        var text = new StringBuilder().Append(paper.Title).Append('\n');
        if (paper.PageUrl is not null)
        {
            text.Append("   ").Append(paper.PageUrl).Append('\n');
        }
        if (byline.Length > 0)
        {
            text.Append("   ").Append(byline).Append('\n');
        }
        if (paper.Abstract.Length > 0)
        {
            text.Append("   ").Append(Trim(paper.Abstract)).Append('\n');
        }

        var title = paper.PageUrl is null
            ? Html.Encode(paper.Title)
            : $"<a href=\"{Html.Encode(paper.PageUrl)}\" style=\"color:#1a56db;text-decoration:none\">{Html.Encode(paper.Title)}</a>";
        var htmlByline = string.Join(" &#183; ", new[] { Html.Encode(Authors(paper.Authors)), paper.Upvotes is { } count ? $"&#9650; {count}" : "" }.Where(part => part.Length > 0));
        var summary = paper.Abstract.Length > 0 ? $"<p style=\"margin:6px 0;color:#333\">{Html.Encode(Trim(paper.Abstract))}</p>" : "";
        var html = $"""
            <tr><td style="padding:14px 0;border-bottom:1px solid #e5e5e5">
            <div style="font-size:1.05em;font-weight:bold">{title}</div>
            <div style="color:#555;font-size:0.9em">{htmlByline}</div>
            {summary}

            """;
        return new RenderedPaper(html, text.ToString());
    }

    private sealed record RenderedPaper(string Html, string Text);

    private sealed record FooterLinks(Uri Preferences, Uri Unsubscribe, Uri Feed, Uri Archive);

    private sealed record Item(DayPaper Paper, string Why, string More, string Less);

    private static string Authors(IReadOnlyList<string> authors) => authors.Count switch
    {
        0 => "",
        <= AuthorsShown + 1 => string.Join(", ", authors),
        _ => $"{string.Join(", ", authors.Take(AuthorsShown))} et al.",
    };

    private static string Trim(string text)
    {
        if (text.Length <= AbstractLength)
        {
            return text;
        }
        var cut = text.LastIndexOf(' ', AbstractLength);
        return text[..(cut > AbstractLength / 2 ? cut : AbstractLength)].TrimEnd(',', ';', ':', '.') + "…";
    }
}
