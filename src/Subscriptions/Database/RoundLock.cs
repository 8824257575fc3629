using Dapper;
using Npgsql;

namespace Subscriptions.Database;

/// <summary>
/// A lock that lets one instance at a time do a round of work (read the bounce mailbox, delete what Retention keeps no
/// longer). It is held by a transaction left open for the round (it takes no snapshot and writes nothing, so it holds
/// nothing else back), not by the session: behind PgBouncer in transaction mode the unlock of a session's lock could run on
/// another server connection than the one holding it, which then kept it, and every instance would have seen the work as
/// being done. Disposing it ends the transaction, and the lock with it.
/// </summary>
internal sealed class RoundLock : IAsyncDisposable
{
    private readonly NpgsqlConnection _connection;
    private readonly NpgsqlTransaction _transaction;

    private RoundLock(NpgsqlConnection connection, NpgsqlTransaction transaction)
    {
        _connection = connection;
        _transaction = transaction;
    }

    /// <summary>The lock of <paramref name="key"/>, or null at once while another instance holds it.</summary>
    public static async Task<RoundLock?> TryTakeAsync(NpgsqlDataSource dataSource, long key, CancellationToken cancellationToken)
    {
        var connection = await dataSource.OpenConnectionAsync(cancellationToken);
        NpgsqlTransaction? transaction = null;
        try
        {
            transaction = await connection.BeginTransactionAsync(cancellationToken);
            if (await connection.ExecuteScalarAsync<bool>(new CommandDefinition(
                    "SELECT pg_try_advisory_xact_lock(@key)", new { key }, transaction, cancellationToken: cancellationToken)))
            {
                return new RoundLock(connection, transaction);
            }
        }
        catch
        {
            await DisposeAsync(connection, transaction);
            throw;
        }
        await DisposeAsync(connection, transaction);
        return null;
    }

    public ValueTask DisposeAsync() => DisposeAsync(_connection, _transaction);

    private static async ValueTask DisposeAsync(NpgsqlConnection connection, NpgsqlTransaction? transaction)
    {
        if (transaction is not null)
        {
            await transaction.DisposeAsync();
        }
        await connection.DisposeAsync();
    }
}
