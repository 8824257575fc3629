using Dapper;
using Npgsql;

namespace Subscriptions.Database;

/// <summary>Settings for a connection whose queries look many rows up one by one by key (planning a slot).</summary>
internal static class KeyedLookups
{
    /// <summary>
    /// Such a query's estimated cost grows with the number of keys and passes the threshold for JIT compilation, which
    /// then took 0.13–0.38 s per query (most of the "already sent" lookup's time, per slot, in a 200,000-subscriber
    /// profile) to speed up expressions evaluated a few rows per key. Off for this connection only: the pool resets
    /// the setting when the connection is returned.
    /// </summary>
    public static async Task DisableJitAsync(NpgsqlConnection connection, CancellationToken cancellationToken) =>
        await connection.ExecuteAsync(new CommandDefinition("SET jit = off", cancellationToken: cancellationToken));
}
