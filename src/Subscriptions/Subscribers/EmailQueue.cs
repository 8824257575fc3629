using System.Data;
using Dapper;
using Npgsql;

namespace Subscriptions.Subscribers;

/// <summary>
/// The queue of transactional emails (confirmations and notices), written in the same transaction
/// as the change that calls for them, so a signup is never stored without its email or the other
/// way round. <see cref="EmailOutbox"/> sends what is queued.
/// </summary>
internal static class EmailQueue
{
    public const string Confirmation = "confirmation";
    public const string AlreadySubscribed = "already_subscribed";

    public static async Task EnqueueAsync(
        NpgsqlConnection connection, IDbTransaction transaction, long subscriberId, string kind, DateTimeOffset now,
        CancellationToken cancellationToken)
    {
        // An older email of the same kind that has not gone out yet is superseded by this one: the
        // subscriber gets one confirmation with the newest link, not one per signup attempt.
        await SupersedePendingAsync(connection, transaction, subscriberId, kind, cancellationToken);

        // A suppressed address (bounced, complained, or added by an operator) is sent nothing, whatever it asks for.
        const string insert = """
            INSERT INTO email_outbox (subscriber_id, kind, next_attempt_at, created_at)
            SELECT s.id, @kind, @now, @now FROM subscribers s
            WHERE s.id = @subscriberId AND NOT EXISTS (SELECT 1 FROM suppressions x WHERE x.email = s.email_key)
            """;
        await connection.ExecuteAsync(new CommandDefinition(
            insert, new { subscriberId, kind, now }, transaction, cancellationToken: cancellationToken));
    }

    /// <summary>Withdraws queued emails of a subscriber (of one kind, or all) that are not being sent right now.</summary>
    public static async Task SupersedePendingAsync(
        NpgsqlConnection connection, IDbTransaction transaction, long subscriberId, string? kind,
        CancellationToken cancellationToken)
    {
        // SKIP LOCKED: a row that a sender holds is mid-send; waiting for it would make a signup hang
        // on the mail server. The sender re-checks the subscriber's state before it sends anyway.
        const string supersede = """
            UPDATE email_outbox SET status = 'superseded'
            WHERE id IN (
                SELECT id FROM email_outbox
                WHERE subscriber_id = @subscriberId AND status = 'pending' AND (@kind::text IS NULL OR kind = @kind)
                FOR UPDATE SKIP LOCKED)
            """;
        await connection.ExecuteAsync(new CommandDefinition(
            supersede, new { subscriberId, kind }, transaction, cancellationToken: cancellationToken));
    }
}
