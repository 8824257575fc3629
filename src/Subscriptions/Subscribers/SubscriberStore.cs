using Dapper;
using Npgsql;
using Subscriptions.Meaning;

namespace Subscriptions.Subscribers;

internal enum ConfirmOutcome
{
    Confirmed,
    AlreadyConfirmed,
    Expired,
    Unknown,
}

internal enum UnsubscribeOutcome
{
    Unsubscribed,
    AlreadyUnsubscribed,
    Unknown,
}

internal sealed record SubscriberLink(long Id, string Email, string Status);

internal sealed record SubscriberPreferences(SubscriberLink Subscriber, IReadOnlyList<string> Topics, int? MaxPapers, DeliveryChoice Delivery);

internal sealed class ConfirmationRow
{
    public string Status { get; set; } = "";

    public DateTime? ConfirmationExpiresAt { get; set; }

    /// <summary>What a former subscriber's address signed up again asked for (sql/0026); null for a first signup.</summary>
    public string[]? RenewedTopics { get; set; }

    public string? RenewedTimeZone { get; set; }

    public int? RenewedDeliveryHour { get; set; }

    public string? RenewedFrequency { get; set; }

    public int? RenewedWeekday { get; set; }
}

internal sealed class SubscriberStore(NpgsqlDataSource dataSource, OutboxSignal outbox, EmbeddingStore embeddings, TimeProvider time)
{
    public static readonly TimeSpan ConfirmationLifetime = TimeSpan.FromDays(7);

    /// <summary>Signup emails of each kind (confirmations, "already subscribed" notices) one address gets at most per <see cref="SignupEmailWindow"/>.</summary>
    public const int SignupEmailsPerWindow = 2;

    public static readonly TimeSpan SignupEmailWindow = TimeSpan.FromDays(1);

    /// <summary>
    /// The <c>SET</c> items that forget what a signup of a former subscriber's address asked for (sql/0026): at its
    /// confirmation, which applies it, and wherever the pending signup ends unconfirmed (an unsubscribe, a bounce, a
    /// complaint). The renewed key stays: it marks the row as a former subscriber's, whom Retention does not erase.
    /// </summary>
    public const string ForgetRenewal =
        "renewed_topics = NULL, renewed_time_zone = NULL, renewed_delivery_hour = NULL, renewed_frequency = NULL, renewed_weekday = NULL";

    /// <summary>
    /// Records a signup and queues the email it calls for, in one transaction: a new or returning
    /// address gets a fresh confirmation; an address that is already active gets a notice instead
    /// (its topics change only through its own preferences link). The outbox's sender is woken once it is committed.
    /// An address that already had <see cref="SignupEmailsPerWindow"/> emails of the kind in the last day is left
    /// exactly as it is: anyone can type anyone's address, and it must not be flooded (nor its last link replaced).
    /// </summary>
    public async Task SignUpAsync(string email, IReadOnlyList<string> topics, DeliveryChoice delivery, CancellationToken cancellationToken)
    {
        // Every signup embeds its new topics, whatever becomes of them, so the time taken says nothing about the address.
        await embeddings.EmbedTopicsAsync(topics, cancellationToken);
        var now = time.GetUtcNow();
        var confirmation = new
        {
            email,
            emailKey = EmailAddresses.Key(email),
            now,
            key = LinkTokens.NewNonce(),
            nonce = LinkTokens.NewNonce(),
            expires = now + ConfirmationLifetime,
        };

        await using var connection = await dataSource.OpenConnectionAsync(cancellationToken);
        if (await SignUpNewAddressAsync(connection, confirmation.emailKey, confirmation, topics, delivery, cancellationToken))
        {
            outbox.Wake();
            return;
        }

        await using var transaction = await connection.BeginTransactionAsync(cancellationToken);
        const string insert = """
            INSERT INTO subscribers (email, email_key, status, subscription_key, confirmation_nonce, confirmation_expires_at, created_at, updated_at)
            VALUES (@email, @emailKey, 'pending', @key, @nonce, @expires, @now, @now)
            ON CONFLICT (email_key) DO NOTHING
            RETURNING id
            """;
        var newId = await connection.QuerySingleOrDefaultAsync<long?>(
            new CommandDefinition(insert, confirmation, transaction, cancellationToken: cancellationToken));
        // After the insert, which waits for an erasure of the address under way: what that erasure kept is seen, and the
        // suppression it moved to the hash is keyed by the address again before any email is queued.
        await SubscriberData.RestoreSuppressionAsync(connection, transaction, confirmation.emailKey, cancellationToken);

        long id;
        string kind;
        if (newId is { } inserted)
        {
            id = inserted;
            kind = EmailQueue.Confirmation;
        }
        else
        {
            const string existing = """
                SELECT id, status FROM subscribers WHERE email_key = @emailKey FOR UPDATE
                """;
            if (await connection.QuerySingleOrDefaultAsync<(long, string)?>(
                new CommandDefinition(existing, confirmation, transaction, cancellationToken: cancellationToken)) is not var (knownId, status))
            {
                // The row the insert met was erased before it could be locked (its owner deleted their data meanwhile): the
                // address is free again, and this is a new signup.
                await transaction.RollbackAsync(cancellationToken);
                await SignUpAsync(email, topics, delivery, cancellationToken);
                return;
            }
            id = knownId;

            kind = status == "active" ? EmailQueue.AlreadySubscribed : EmailQueue.Confirmation;

            // Counted under the row lock taken above, so concurrent signups of one address cannot both pass.
            // Superseded emails never went out; one being sent right now is still 'pending' and counts.
            const string recentEmails = """
                SELECT count(*) FROM email_outbox
                WHERE subscriber_id = @id AND kind = @kind AND created_at > @since AND status IN ('pending', 'sent')
                """;
            var recent = await connection.ExecuteScalarAsync<long>(new CommandDefinition(
                recentEmails, new { id, kind, since = now - SignupEmailWindow }, transaction, cancellationToken: cancellationToken));
            if (recent >= SignupEmailsPerWindow)
            {
                await transaction.CommitAsync(cancellationToken);
                return;
            }

            if (kind == EmailQueue.Confirmation)
            {
                // Pending: a fresh confirmation link replaces the last one, and the topics stay those of the
                // first signup (anyone can sign up any address; only its owner's link changes what it gets).
                // Unsubscribed or bounced: a new subscription begins once it is confirmed, with a new key so the old
                // subscription's links stop working, and with the topics and delivery time asked for now (sql/0026). Until
                // then the owner's own links (their data) still work, and their data is as they left it.
                const string renew = """
                    UPDATE subscribers
                    SET status = 'pending', confirmation_nonce = @nonce, confirmation_expires_at = @expires, confirmed_at = NULL, updated_at = @now
                    WHERE id = @id
                    """;
                await connection.ExecuteAsync(new CommandDefinition(
                    renew, new { id, confirmation.nonce, confirmation.expires, now }, transaction, cancellationToken: cancellationToken));
                if (status != "pending")
                {
                    const string newSubscription = """
                        UPDATE subscribers
                        SET renewed_subscription_key = @key, renewed_topics = @topics, renewed_time_zone = @TimeZone, renewed_delivery_hour = @Hour,
                            renewed_frequency = @Frequency, renewed_weekday = @Weekday
                        WHERE id = @id
                        """;
                    await connection.ExecuteAsync(new CommandDefinition(
                        newSubscription,
                        new { id, confirmation.key, topics = topics.ToArray(), delivery.TimeZone, delivery.Hour, delivery.Frequency, delivery.Weekday },
                        transaction, cancellationToken: cancellationToken));
                }
            }
        }

        if (newId is not null)
        {
            await ReplaceTopicsAsync(connection, transaction, id, topics, cancellationToken);
            await SetDeliveryAsync(connection, transaction, id, delivery, cancellationToken);
        }

        await EmailQueue.EnqueueAsync(connection, transaction, id, kind, now, cancellationToken);
        await transaction.CommitAsync(cancellationToken);
        outbox.Wake();
    }

    public async Task<ConfirmOutcome> ConfirmAsync(LinkToken token, CancellationToken cancellationToken)
    {
        var now = time.GetUtcNow();
        await using var connection = await dataSource.OpenConnectionAsync(cancellationToken);
        await using var transaction = await connection.BeginTransactionAsync(cancellationToken);

        const string find = """
            SELECT status, confirmation_expires_at,
                   renewed_topics, renewed_time_zone, renewed_delivery_hour, renewed_frequency, renewed_weekday
            FROM subscribers
            WHERE id = @SubscriberId AND confirmation_nonce = @Nonce
            FOR UPDATE
            """;
        var row = await connection.QuerySingleOrDefaultAsync<ConfirmationRow>(
            new CommandDefinition(find, token, transaction, cancellationToken: cancellationToken));

        var outcome = row switch
        {
            null => ConfirmOutcome.Unknown,
            { Status: "active" } => ConfirmOutcome.AlreadyConfirmed,
            { Status: "pending", ConfirmationExpiresAt: var expiresAt } when expiresAt <= now.UtcDateTime => ConfirmOutcome.Expired,
            { Status: "pending" } => ConfirmOutcome.Confirmed,
            _ => ConfirmOutcome.Unknown,
        };

        if (outcome == ConfirmOutcome.Confirmed)
        {
            const string activate = $"""
                UPDATE subscribers
                SET status = 'active', confirmed_at = @now, updated_at = @now, permanent_failures = 0,
                    subscription_key = coalesce(renewed_subscription_key, subscription_key), renewed_subscription_key = NULL, {ForgetRenewal}
                WHERE id = @id
                """;
            await connection.ExecuteAsync(new CommandDefinition(
                activate, new { id = token.SubscriberId, now }, transaction, cancellationToken: cancellationToken));
            if (row!.RenewedTopics is { } renewedTopics)
            {
                await ReplaceTopicsAsync(connection, transaction, token.SubscriberId, renewedTopics, cancellationToken);
                await SetDeliveryAsync(connection, transaction, token.SubscriberId, new DeliveryChoice(
                    row.RenewedTimeZone, row.RenewedDeliveryHour, row.RenewedFrequency ?? DeliveryChoice.Daily, row.RenewedWeekday), cancellationToken);
            }
        }
        await transaction.CommitAsync(cancellationToken);
        return outcome;
    }

    /// <summary>The subscriber an unsubscribe (or preferences) link names, while that subscription lasts.</summary>
    public async Task<SubscriberLink?> FindBySubscriptionAsync(LinkToken token, CancellationToken cancellationToken)
    {
        const string sql = """
            SELECT id, email, status FROM subscribers WHERE id = @SubscriberId AND subscription_key = @Nonce
            """;
        await using var connection = await dataSource.OpenConnectionAsync(cancellationToken);
        return await connection.QuerySingleOrDefaultAsync<SubscriberLink>(
            new CommandDefinition(sql, token, cancellationToken: cancellationToken));
    }

    public async Task<UnsubscribeOutcome> UnsubscribeAsync(LinkToken token, CancellationToken cancellationToken)
    {
        var now = time.GetUtcNow();
        await using var connection = await dataSource.OpenConnectionAsync(cancellationToken);
        await using var transaction = await connection.BeginTransactionAsync(cancellationToken);

        const string unsubscribe = $"""
            UPDATE subscribers
            SET status = 'unsubscribed', unsubscribed_at = @now, updated_at = @now, confirmation_nonce = NULL, {ForgetRenewal}
            WHERE id = @SubscriberId AND subscription_key = @Nonce AND status <> 'unsubscribed'
            RETURNING id
            """;
        var changed = await connection.QuerySingleOrDefaultAsync<long?>(new CommandDefinition(
            unsubscribe, new { token.SubscriberId, token.Nonce, now }, transaction, cancellationToken: cancellationToken));

        UnsubscribeOutcome outcome;
        if (changed is not null)
        {
            await EmailQueue.SupersedePendingAsync(connection, transaction, token.SubscriberId, kind: null, cancellationToken);
            outcome = UnsubscribeOutcome.Unsubscribed;
        }
        else
        {
            const string exists = "SELECT 1 FROM subscribers WHERE id = @SubscriberId AND subscription_key = @Nonce";
            var found = await connection.QuerySingleOrDefaultAsync<int?>(
                new CommandDefinition(exists, token, transaction, cancellationToken: cancellationToken));
            outcome = found is null ? UnsubscribeOutcome.Unknown : UnsubscribeOutcome.AlreadyUnsubscribed;
        }
        await transaction.CommitAsync(cancellationToken);
        return outcome;
    }

    /// <summary>The topics and options a preferences link shows; null when the link's subscription is over.</summary>
    public async Task<SubscriberPreferences?> GetPreferencesAsync(LinkToken token, CancellationToken cancellationToken)
    {
        if (await FindBySubscriptionAsync(token, cancellationToken) is not { Status: not "unsubscribed" } subscriber)
        {
            return null;
        }
        const string sql = """
            SELECT s.max_papers, array_remove(array_agg(t.text ORDER BY t.position), NULL) AS topics,
                   s.time_zone, s.delivery_hour::int, s.frequency, s.weekday::int
            FROM subscribers s LEFT JOIN topics t ON t.subscriber_id = s.id
            WHERE s.id = @id
            GROUP BY s.id
            """;
        await using var connection = await dataSource.OpenConnectionAsync(cancellationToken);
        // None when the subscriber erased their data since the lookup above (another tab): the link has just ended.
        if (await connection.QuerySingleOrDefaultAsync<(int?, string[], string?, int?, string, int?)?>(
            new CommandDefinition(sql, new { id = subscriber.Id }, cancellationToken: cancellationToken)) is not var (maxPapers, topics, timeZone, hour, frequency, weekday))
        {
            return null;
        }
        return new SubscriberPreferences(subscriber, topics, maxPapers, new DeliveryChoice(timeZone, hour, frequency, weekday));
    }

    /// <summary>
    /// Replaces the topics, cap and (when given) delivery time of the subscription the link names; false when that subscription is over.
    /// </summary>
    public async Task<bool> SavePreferencesAsync(
        LinkToken token, IReadOnlyList<string> topics, int maxPapers, DeliveryChoice? delivery, CancellationToken cancellationToken)
    {
        await using var connection = await dataSource.OpenConnectionAsync(cancellationToken);
        await using var transaction = await connection.BeginTransactionAsync(cancellationToken);
        const string update = """
            UPDATE subscribers SET max_papers = @maxPapers, updated_at = @now
            WHERE id = @SubscriberId AND subscription_key = @Nonce AND status <> 'unsubscribed'
            RETURNING id
            """;
        var id = await connection.QuerySingleOrDefaultAsync<long?>(new CommandDefinition(
            update, new { token.SubscriberId, token.Nonce, maxPapers, now = time.GetUtcNow() }, transaction, cancellationToken: cancellationToken));
        if (id is null)
        {
            return false;
        }
        await ReplaceTopicsAsync(connection, transaction, id.Value, topics, cancellationToken);
        if (delivery is not null)
        {
            await SetDeliveryAsync(connection, transaction, id.Value, delivery, cancellationToken);
        }
        await transaction.CommitAsync(cancellationToken);
        await embeddings.EmbedTopicsAsync(topics, cancellationToken);
        return true;
    }

    /// <summary>
    /// The common case, an address never seen before, in one statement (one round trip, committed by itself): what the
    /// transaction below does for it, step for step. Its suppressions are restored from an erasure's hash as there, and
    /// no confirmation is queued for a suppressed address; the statement's one snapshot still sees the hashed row it
    /// moves, so both keys are checked. False, with nothing changed but that restoration, when the address is known (the
    /// transaction restores again: the address may have been erased in between).
    /// </summary>
    private static async Task<bool> SignUpNewAddressAsync(
        NpgsqlConnection connection, string emailKey, object confirmation, IReadOnlyList<string> topics, DeliveryChoice delivery,
        CancellationToken cancellationToken)
    {
        const string sql = $"""
            WITH {SubscriberData.RestoreSuppressionCtes}, subscriber AS (
                INSERT INTO subscribers (email, email_key, status, subscription_key, confirmation_nonce, confirmation_expires_at, created_at, updated_at,
                                         time_zone, delivery_hour, frequency, weekday)
                VALUES (@email, @emailKey, 'pending', @key, @nonce, @expires, @now, @now, @TimeZone, @Hour, @Frequency, @Weekday)
                ON CONFLICT (email_key) DO NOTHING
                RETURNING id
            ), new_topics AS (
                INSERT INTO topics (subscriber_id, position, text)
                SELECT s.id, t.ordinality - 1, t.topic FROM subscriber s, unnest(@topics) WITH ORDINALITY AS t(topic, ordinality)
            ), queued AS (
                INSERT INTO email_outbox (subscriber_id, kind, next_attempt_at, created_at)
                SELECT s.id, @kind, @now, @now FROM subscriber s
                WHERE NOT EXISTS (SELECT 1 FROM suppressions x WHERE x.email IN (@emailKey, @erasedKey))
            )
            SELECT id FROM subscriber;
            -- A statement of its own, in the same round trip: the insert may have waited for an erasure of the address to
            -- commit (its row was being deleted), and the restore above, with the statement's snapshot, came before that
            -- erasure had moved the suppression to the hash. This one sees it, and keys it by the address again.
            WITH {SubscriberData.RestoreSuppressionCtes}
            SELECT 1;
            """;
        var parameters = new DynamicParameters(confirmation);
        parameters.AddDynamicParams(new
        {
            erasedKey = SubscriberData.ErasedKey(emailKey),
            topics = topics.ToArray(),
            kind = EmailQueue.Confirmation,
            delivery.TimeZone,
            delivery.Hour,
            delivery.Frequency,
            delivery.Weekday,
        });
        await using var results = await connection.QueryMultipleAsync(new CommandDefinition(sql, parameters, cancellationToken: cancellationToken));
        var inserted = await results.ReadSingleOrDefaultAsync<long?>() is not null;
        await results.ReadAsync<int>();
        return inserted;
    }

    private static Task SetDeliveryAsync(
        NpgsqlConnection connection, NpgsqlTransaction transaction, long id, DeliveryChoice delivery, CancellationToken cancellationToken)
    {
        const string sql = """
            UPDATE subscribers SET time_zone = @TimeZone, delivery_hour = @Hour, frequency = @Frequency, weekday = @Weekday WHERE id = @id
            """;
        return connection.ExecuteAsync(new CommandDefinition(sql, new { id, delivery.TimeZone, delivery.Hour, delivery.Frequency, delivery.Weekday },
            transaction, cancellationToken: cancellationToken));
    }

    private static Task ReplaceTopicsAsync(
        NpgsqlConnection connection, NpgsqlTransaction transaction, long id, IReadOnlyList<string> topics, CancellationToken cancellationToken)
    {
        const string replaceTopics = """
            DELETE FROM topics WHERE subscriber_id = @id;
            INSERT INTO topics (subscriber_id, position, text)
            SELECT @id, ordinality - 1, topic FROM unnest(@topics) WITH ORDINALITY AS t(topic, ordinality);
            """;
        return connection.ExecuteAsync(new CommandDefinition(
            replaceTopics, new { id, topics = topics.ToArray() }, transaction, cancellationToken: cancellationToken));
    }
}
