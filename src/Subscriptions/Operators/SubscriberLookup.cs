using Dapper;
using Npgsql;
using Subscriptions.Bounces;
using Subscriptions.Subscribers;

namespace Subscriptions.Operators;

public sealed record SubscriberDelivery(DateOnly Day, string Status, int Attempts, DateTime? SentAt, string? LastError, int Papers);

public sealed record SubscriberEmail(string Kind, string Status, int Attempts, DateTime CreatedAt, DateTime? SentAt, string? LastError);

public sealed record SubscriberDetails(
    long Id, string Email, string Status, DateTime CreatedAt, DateTime? ConfirmedAt, DateTime? UnsubscribedAt, int? MaxPapers,
    string? SuppressionReason, DateTime? SuppressedAt, IReadOnlyList<string> Topics, IReadOnlyList<SubscriberDelivery> Deliveries,
    IReadOnlyList<SubscriberEmail> Emails);

public enum SubscriberAction { ResendConfirmation, Unsubscribe, Suppress, LiftSuppression, Erase }

/// <summary>What an action did, in a sentence, and the subscriber's address, or null once they are erased.</summary>
internal sealed record SubscriberActionOutcome(string Notice, string? Email);

/// <summary>One subscriber, looked up by address, and what an operator can do to them.</summary>
internal sealed class SubscriberLookup(NpgsqlDataSource dataSource, SuppressionStore suppressions, SubscriberData data, OutboxSignal outbox, TimeProvider time)
{
    /// <summary>
    /// The subscriber with exactly this address (canonicalised as signup does: case, Unicode form, IDNA), or null.
    /// An equality on the stored key: a % or _ in what was typed is only a character, never a pattern.
    /// </summary>
    public async Task<SubscriberDetails?> FindAsync(string address, CancellationToken cancellationToken)
    {
        const string sql = "SELECT id FROM subscribers WHERE email_key = @key";
        await using var connection = await dataSource.OpenConnectionAsync(cancellationToken);
        var id = await connection.QuerySingleOrDefaultAsync<long?>(new CommandDefinition(
            sql, new { key = SuppressionStore.KeyOf(address) }, cancellationToken: cancellationToken));
        return id is { } found ? await FindByIdAsync(found, cancellationToken) : null;
    }

    public async Task<SubscriberDetails?> FindByIdAsync(long subscriberId, CancellationToken cancellationToken)
    {
        await using var connection = await dataSource.OpenConnectionAsync(cancellationToken);
        const string subscriber = """
            SELECT s.id, s.email, s.status, s.created_at, s.confirmed_at, s.unsubscribed_at, s.max_papers,
                   x.reason AS suppression_reason, x.created_at AS suppressed_at
            FROM subscribers s LEFT JOIN suppressions x ON x.email = s.email_key
            WHERE s.id = @subscriberId
            """;
        var row = await connection.QuerySingleOrDefaultAsync<SubscriberRow>(new CommandDefinition(subscriber, new { subscriberId }, cancellationToken: cancellationToken));
        if (row is null)
        {
            return null;
        }
        const string topics = "SELECT text FROM topics WHERE subscriber_id = @id ORDER BY position";
        const string deliveries = """
            SELECT day, status, attempts, sent_at, last_error, jsonb_array_length(papers) AS papers
            FROM deliveries WHERE subscriber_id = @id ORDER BY day DESC LIMIT 14
            """;
        const string emails = """
            SELECT kind, status, attempts, created_at, sent_at, last_error
            FROM email_outbox WHERE subscriber_id = @id ORDER BY id DESC LIMIT 10
            """;
        var id = new { id = row.Id };
        var topicList = (await connection.QueryAsync<string>(new CommandDefinition(topics, id, cancellationToken: cancellationToken))).ToList();
        var deliveryList = (await connection.QueryAsync<SubscriberDelivery>(new CommandDefinition(deliveries, id, cancellationToken: cancellationToken))).ToList();
        var emailList = (await connection.QueryAsync<SubscriberEmail>(new CommandDefinition(emails, id, cancellationToken: cancellationToken))).ToList();
        return new SubscriberDetails(row.Id, row.Email, row.Status, row.CreatedAt, row.ConfirmedAt, row.UnsubscribedAt, row.MaxPapers,
            row.SuppressionReason, row.SuppressedAt, topicList, deliveryList, emailList);
    }

    /// <summary>Does <paramref name="action"/> to the subscriber with this id; null when there is no such subscriber.</summary>
    public async Task<SubscriberActionOutcome?> ActAsync(long id, SubscriberAction action, CancellationToken cancellationToken)
    {
        await using var connection = await dataSource.OpenConnectionAsync(cancellationToken);
        var email = await connection.QuerySingleOrDefaultAsync<string>(new CommandDefinition(
            "SELECT email FROM subscribers WHERE id = @id", new { id }, cancellationToken: cancellationToken));
        if (email is null)
        {
            return null;
        }
        var now = time.GetUtcNow();
        switch (action)
        {
            case SubscriberAction.ResendConfirmation:
                {
                    await using var transaction = await connection.BeginTransactionAsync(cancellationToken);
                    // A fresh link (a new nonce and seven more days) for a subscriber who has not confirmed yet.
                    const string renew = """
                        UPDATE subscribers SET confirmation_nonce = @nonce, confirmation_expires_at = @expires, updated_at = @now
                        WHERE id = @id AND status = 'pending'
                        """;
                    var renewed = await connection.ExecuteAsync(new CommandDefinition(renew,
                        new { id, nonce = LinkTokens.NewNonce(), expires = now + SubscriberStore.ConfirmationLifetime, now }, transaction,
                        cancellationToken: cancellationToken));
                    if (renewed == 0)
                    {
                        return new($"{email} is not waiting for confirmation; nothing was sent.", email);
                    }
                    await EmailQueue.EnqueueAsync(connection, transaction, id, EmailQueue.Confirmation, now, cancellationToken);
                    await transaction.CommitAsync(cancellationToken);
                    outbox.Wake();
                    return new($"A new confirmation email to {email} is queued (unless the address is suppressed).", email);
                }
            case SubscriberAction.Unsubscribe:
                {
                    const string unsubscribe = $"""
                        UPDATE subscribers SET status = 'unsubscribed', unsubscribed_at = @now, updated_at = @now, {SubscriberStore.ForgetRenewal}
                        WHERE id = @id AND status IN ('pending', 'active')
                        """;
                    var changed = await connection.ExecuteAsync(new CommandDefinition(unsubscribe, new { id, now }, cancellationToken: cancellationToken));
                    return new(changed == 1 ? $"{email} is unsubscribed." : $"{email} was not subscribed; nothing was changed.", email);
                }
            case SubscriberAction.Suppress:
                return new(await suppressions.AddAsync(email, cancellationToken) ? $"{email} is suppressed." : $"{email} was already suppressed.", email);
            case SubscriberAction.Erase:
                // As the subscriber's own "Delete everything": a suppressed address stays suppressed, as a hash of it.
                return await data.EraseAsync(id, cancellationToken)
                    ? new($"Everything stored about {email} is erased (a suppression, if there was one, is kept as a hash of the address).", Email: null)
                    : null;
            default:
                return new(await suppressions.RemoveAsync(email, cancellationToken)
                    ? $"The suppression of {email} is lifted."
                    : $"{email} was not suppressed.", email);
        }
    }

    private sealed record SubscriberRow(
        long Id, string Email, string Status, DateTime CreatedAt, DateTime? ConfirmedAt, DateTime? UnsubscribedAt, int? MaxPapers,
        string? SuppressionReason, DateTime? SuppressedAt);
}
