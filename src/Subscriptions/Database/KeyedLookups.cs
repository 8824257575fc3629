using Dapper;
using Npgsql;

namespace Subscriptions.Database;

/// <summary>Settings for a query that looks many rows up one by one by key (planning a slot).</summary>
internal static class KeyedLookups
{
    /// <summary>
    /// For the rest of <paramref name="transaction"/> only: every lookup by key, whatever the statistics say, and no JIT.
    /// Where the statistics had a table empty or nearly (analyzed between a small slot and a large one, or on a new
    /// installation) while it was being written beside the read, the planner scanned it whole for each key instead of
    /// looking the key up (daily benchmark, 100,000 subscribers: 47.7 s and 88.6 million buffers for the statement,
    /// against 2.1 s and 0.8 million). And such a query's estimated cost grows with the number of keys and passes the
    /// threshold for JIT compilation, which then took 0.13–0.38 s per query (in a 200,000-subscriber profile) to speed up
    /// expressions evaluated a few rows per key.
    /// </summary>
    /// <remarks>
    /// <c>SET LOCAL</c>, not <c>SET</c>: a session's setting outlives the connection's use wherever nothing resets it, as
    /// behind PgBouncer in transaction mode (where the next statement may also run on another server connection), or with
    /// Npgsql's <c>No Reset On Close</c>.
    /// </remarks>
    public static async Task ApplyAsync(NpgsqlTransaction transaction, CancellationToken cancellationToken) =>
        await transaction.Connection!.ExecuteAsync(new CommandDefinition(
            "SET LOCAL enable_seqscan = off; SET LOCAL jit = off", transaction: transaction, cancellationToken: cancellationToken));
}
