using Dapper;
using Microsoft.Extensions.Options;
using Npgsql;
using Subscriptions.Digest;

namespace Subscriptions.Operators;

// The console's view models are public because Razor components (always public classes) take them as parameters.
public sealed record StatusCount(string Status, long Count);

public sealed record DayActivity(DateOnly Day, long Signups, long Confirmations, long Unsubscribes, long Bounces);

public sealed record RunDay(DateOnly Day, long Planned, long Sent, long Failed, long Skipped, long Open, DateTime? Started, DateTime? LastSent, long SentLastMinute);

public sealed record DeliveryFailure(DateOnly Day, string Email, string Status, int Attempts, string? LastError);

public sealed record DayPaperUse(string Title, string? PageUrl, int? Upvotes, long Digests);

public sealed record TopicCount(string Topic, long Subscribers);

public sealed record DashboardView(
    DateTimeOffset Now, DateOnly Today, SendingState Sending, IReadOnlyList<StatusCount> Statuses, long Suppressed,
    IReadOnlyList<DayActivity> Activity, RunDay TodaysRun, IReadOnlyList<RunDay> Runs, IReadOnlyList<DeliveryFailure> Failures,
    IReadOnlyList<DayPaperUse> Papers, IReadOnlyList<TopicCount> Topics, string? Notice)
{
    /// <summary>Messages a second over the last minute, or over the run so far when nothing was sent in the last minute.</summary>
    public double Rate => TodaysRun.SentLastMinute > 0
        ? TodaysRun.SentLastMinute / 60.0
        : TodaysRun is { Started: { } started, LastSent: { } last, Sent: > 0 } && last > started ? TodaysRun.Sent / (last - started).TotalSeconds : 0;

    public DateTimeOffset? EstimatedFinish => TodaysRun.Open == 0 ? null : Rate > 0 ? Now + TimeSpan.FromSeconds(TodaysRun.Open / Rate) : null;
}

/// <summary>What the dashboard shows: one set-based query per panel, none per subscriber.</summary>
internal sealed class Dashboard(NpgsqlDataSource dataSource, SendingControl sending, IOptions<DigestOptions> digestOptions, TimeProvider time)
{
    public const int ActivityDays = 90;
    public const int RunDays = 30;

    /// <summary>The day of the latest scheduled run (<c>Digest:Schedule</c> in <c>Digest:TimeZone</c>): "this morning's run".</summary>
    public DateOnly Today => DigestSchedule.DayOfFiring(digestOptions.Value, time.GetUtcNow());

    public async Task<DashboardView> BuildAsync(string? notice, CancellationToken cancellationToken)
    {
        var now = time.GetUtcNow();
        var today = Today;
        var utcToday = DateOnly.FromDateTime(now.UtcDateTime);
        await using var connection = await dataSource.OpenConnectionAsync(cancellationToken);

        const string statuses = """
            SELECT status, count(*) AS count FROM subscribers GROUP BY status ORDER BY status
            """;
        var statusCounts = (await connection.QueryAsync<StatusCount>(new CommandDefinition(statuses, cancellationToken: cancellationToken))).ToList();
        var suppressed = await connection.ExecuteScalarAsync<long>(new CommandDefinition("SELECT count(*) FROM suppressions", cancellationToken: cancellationToken));

        // Days are UTC days. Bounces are bounce reports and webhook events (hard and soft), not complaints.
        const string activity = """
            WITH days AS (SELECT generate_series(@from::date, @to::date, interval '1 day')::date AS day),
            signups AS (SELECT (created_at AT TIME ZONE 'UTC')::date AS day, count(*) AS n FROM subscribers WHERE created_at >= @fromInstant GROUP BY 1),
            confirmations AS (SELECT (confirmed_at AT TIME ZONE 'UTC')::date AS day, count(*) AS n FROM subscribers WHERE confirmed_at >= @fromInstant GROUP BY 1),
            unsubscribes AS (SELECT (unsubscribed_at AT TIME ZONE 'UTC')::date AS day, count(*) AS n FROM subscribers WHERE unsubscribed_at >= @fromInstant GROUP BY 1),
            bounces AS (SELECT (received_at AT TIME ZONE 'UTC')::date AS day, count(*) AS n FROM bounce_events WHERE kind IN ('hard', 'soft') AND received_at >= @fromInstant GROUP BY 1)
            SELECT d.day, coalesce(s.n, 0) AS signups, coalesce(c.n, 0) AS confirmations, coalesce(u.n, 0) AS unsubscribes, coalesce(b.n, 0) AS bounces
            FROM days d
            LEFT JOIN signups s ON s.day = d.day LEFT JOIN confirmations c ON c.day = d.day
            LEFT JOIN unsubscribes u ON u.day = d.day LEFT JOIN bounces b ON b.day = d.day
            ORDER BY d.day
            """;
        var from = utcToday.AddDays(-(ActivityDays - 1));
        var fromInstant = new DateTimeOffset(from.ToDateTime(TimeOnly.MinValue), TimeSpan.Zero);
        var days = (await connection.QueryAsync<DayActivity>(new CommandDefinition(activity,
            new { from, to = utcToday, fromInstant }, cancellationToken: cancellationToken))).ToList();

        const string runs = """
            SELECT day, count(*) AS planned,
                   count(*) FILTER (WHERE status = 'sent') AS sent,
                   count(*) FILTER (WHERE status = 'failed') AS failed,
                   count(*) FILTER (WHERE status = 'skipped') AS skipped,
                   count(*) FILTER (WHERE status IN ('pending', 'sending')) AS open,
                   min(created_at) AS started, max(sent_at) AS last_sent,
                   count(*) FILTER (WHERE sent_at > @now - interval '1 minute') AS sent_last_minute
            FROM deliveries WHERE day > @since
            GROUP BY day ORDER BY day DESC
            """;
        var runDays = (await connection.QueryAsync<RunDay>(new CommandDefinition(runs,
            new { now, since = today.AddDays(-RunDays) }, cancellationToken: cancellationToken))).ToList();
        var todaysRun = runDays.FirstOrDefault(run => run.Day == today) ?? new RunDay(today, 0, 0, 0, 0, 0, null, null, 0);

        // The day's deliveries that did not arrive (failed, or still waiting with an error), then earlier failures.
        const string failures = """
            SELECT d.day, s.email, d.status, d.attempts, d.last_error
            FROM deliveries d JOIN subscribers s ON s.id = d.subscriber_id
            WHERE (d.day = @today AND d.status IN ('failed', 'pending', 'sending') AND d.last_error IS NOT NULL)
               OR (d.status = 'failed' AND d.day > @since)
            ORDER BY d.day DESC, d.id DESC
            LIMIT 50
            """;
        var failed = (await connection.QueryAsync<DeliveryFailure>(new CommandDefinition(failures,
            new { today, since = today.AddDays(-RunDays) }, cancellationToken: cancellationToken))).ToList();

        // A paper is counted by the day it was planned from, not by the delivery's date: that is the subscriber's local date,
        // a day later east of the operator or in a slot before the default time, a day earlier far west of it. (Deliveries
        // planned before slots name no day: theirs.)
        const string papers = """
            WITH used AS (
                SELECT (paper ->> 'paper_id')::bigint AS paper_id, count(*) AS digests
                FROM deliveries d, jsonb_array_elements(d.papers) AS paper
                WHERE d.day BETWEEN @today - 1 AND @today + 1 AND d.status = 'sent' AND coalesce((paper ->> 'day')::date, d.day) = @today
                GROUP BY 1
            ),
            listed AS (
                SELECT paper_id, max(upvotes) AS upvotes, min(rank) AS rank FROM paper_days WHERE day = @today GROUP BY paper_id
            )
            SELECT p.title, p.page_url, l.upvotes, coalesce(u.digests, 0) AS digests
            FROM listed l JOIN papers p ON p.id = l.paper_id LEFT JOIN used u ON u.paper_id = l.paper_id
            ORDER BY coalesce(u.digests, 0) DESC, l.upvotes DESC NULLS LAST, l.rank
            LIMIT 30
            """;
        var dayPapers = (await connection.QueryAsync<DayPaperUse>(new CommandDefinition(papers,
            new { today }, cancellationToken: cancellationToken))).ToList();

        const string topics = """
            SELECT lower(t.text) AS topic, count(DISTINCT t.subscriber_id) AS subscribers
            FROM topics t JOIN subscribers s ON s.id = t.subscriber_id
            WHERE s.status = 'active'
            GROUP BY 1 ORDER BY 2 DESC, 1 LIMIT 15
            """;
        var topicCounts = (await connection.QueryAsync<TopicCount>(new CommandDefinition(topics, cancellationToken: cancellationToken))).ToList();

        return new DashboardView(now, today, await sending.GetAsync(cancellationToken), statusCounts, suppressed, days, todaysRun, runDays,
            failed, dayPapers, topicCounts, notice);
    }
}
