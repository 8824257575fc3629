using Dapper;
using Npgsql;

namespace Subscriptions.Database;

/// <summary>Planner settings for the queries of one read-only transaction.</summary>
internal static class QuerySettings
{
    /// <summary>
    /// Begins a transaction on <paramref name="connection"/> and applies <paramref name="settings"/> (<c>SET LOCAL …</c>) to it:
    /// they end with the transaction, even behind a pool that does not reset connections (PgBouncer with
    /// <c>No Reset On Close</c>, as docs/operations.md advises), where a session-wide <c>SET</c> would outlive the query.
    /// </summary>
    public static async Task<NpgsqlTransaction> BeginAsync(NpgsqlConnection connection, string settings, CancellationToken cancellationToken)
    {
        var transaction = await connection.BeginTransactionAsync(cancellationToken);
        await connection.ExecuteAsync(new CommandDefinition(settings, transaction: transaction, cancellationToken: cancellationToken));
        return transaction;
    }
}
