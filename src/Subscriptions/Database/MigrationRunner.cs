using System.Globalization;
using System.Reflection;
using System.Security.Cryptography;
using System.Text;
using Dapper;
using Npgsql;
using Polly;
using Polly.Retry;

namespace Subscriptions.Database;

/// <summary>
/// Applies the numbered scripts of <c>sql/</c> (embedded in this assembly) in order, each once, in its
/// own transaction, journaled in <c>schema_migrations</c>. Concurrent runners (two instances starting together) take
/// turns: each transaction takes an advisory lock first, and a script another runner applied meanwhile is skipped.
/// </summary>
/// <remarks>
/// The lock is a transaction's (<c>pg_advisory_xact_lock</c>), not the session's: behind PgBouncer in transaction mode
/// the statements of one connection outside a transaction may each run on another server connection, so a session's
/// lock could be released on one that did not hold it, and stay held on the one that did, for every later start to wait on.
/// </remarks>
internal sealed class MigrationRunner(NpgsqlDataSource dataSource, ILogger<MigrationRunner> logger, IReadOnlyList<MigrationScript> scripts)
{
    public MigrationRunner(NpgsqlDataSource dataSource, ILogger<MigrationRunner> logger)
        : this(dataSource, logger, Scripts)
    {
    }

    // Any fixed number works; it only has to be the same for every instance of this service.
    internal const long AdvisoryLockKey = 0x5355_4253_4352_4950; // "SUBSCRIP"

    // No command timeout (Npgsql's default is 30 s) for a script or the wait for another runner's lock: an index built on a
    // large table takes longer, and a migration stopped at 30 s was rolled back at every start, the instance never up.
    private const int NoTimeout = 0;

    /// <summary>
    /// How long a script waits for a table lock before it lets go and tries again. During a rolling upgrade the older
    /// instances still use the tables: an <c>ALTER TABLE</c> waiting for a send's or a slot planning's transaction to end
    /// makes every later statement on that table queue behind it, and a planning that waits for its own queued inserts
    /// never ends, a wait PostgreSQL cannot see as a deadlock. So the wait is short, and retried with growing pauses.
    /// </summary>
    internal static readonly TimeSpan LockTimeout = TimeSpan.FromSeconds(5);

    private static readonly TimeSpan LongestPauseBetweenTries = TimeSpan.FromSeconds(30);

    public static IReadOnlyList<MigrationScript> Scripts { get; } = LoadEmbeddedScripts();

    public async Task<IReadOnlyList<string>> ApplyPendingAsync(CancellationToken cancellationToken)
    {
        await using var connection = await dataSource.OpenConnectionAsync(cancellationToken);
        Dictionary<string, string> applied;
        await using (var transaction = await LockedTransactionAsync(connection, cancellationToken))
        {
            const string createJournal = """
                CREATE TABLE IF NOT EXISTS schema_migrations (
                    name       text        PRIMARY KEY,
                    checksum   text        NOT NULL,
                    applied_at timestamptz NOT NULL DEFAULT now()
                )
                """;
            await connection.ExecuteAsync(new CommandDefinition(createJournal, transaction: transaction, cancellationToken: cancellationToken));

            const string selectApplied = "SELECT name, checksum FROM schema_migrations";
            applied = (await connection.QueryAsync<(string Name, string Checksum)>(
                    new CommandDefinition(selectApplied, transaction: transaction, cancellationToken: cancellationToken)))
                .ToDictionary(row => row.Name, row => row.Checksum);
            await transaction.CommitAsync(cancellationToken);
        }

        // A replica older than the schema must not run against it (a rolling upgrade half done, or a rollback):
        // it would write what the newer version no longer expects.
        var unknown = applied.Keys.Except(scripts.Select(script => script.Name), StringComparer.Ordinal).Order(StringComparer.Ordinal).ToList();
        if (unknown.Count > 0)
        {
            throw new SchemaMismatchException(
                $"The database was migrated by a newer version of this service ({string.Join(", ", unknown)} applied); " +
                "this version knows migrations up to " + scripts[^1].Name + ". Run the newer version, or restore a backup taken before it.");
        }

        var appliedNow = new List<string>();
        foreach (var script in scripts)
        {
            if (applied.TryGetValue(script.Name, out var checksum))
            {
                CheckUnchanged(script, checksum);
                continue;
            }
            if (await RetriedWhileTablesAreBusy(script).ExecuteAsync(
                    async (state, token) => await ApplyAsync(state.connection, state.script, token), (connection, script), cancellationToken))
            {
                appliedNow.Add(script.Name);
            }
        }
        return appliedNow;
    }

    private ResiliencePipeline RetriedWhileTablesAreBusy(MigrationScript script) => new ResiliencePipelineBuilder()
        .AddRetry(new RetryStrategyOptions
        {
            ShouldHandle = new PredicateBuilder().Handle<PostgresException>(e => e.SqlState == PostgresErrorCodes.LockNotAvailable),
            MaxRetryAttempts = int.MaxValue,
            BackoffType = DelayBackoffType.Exponential,
            Delay = TimeSpan.FromSeconds(1),
            MaxDelay = LongestPauseBetweenTries,
            UseJitter = true,
            OnRetry = retry =>
            {
                logger.LogWarning(
                    "sql/{Script} waited {LockTimeoutSeconds} s for a table the running service is using (a send, or a slot's planning); rolled back, trying again in {DelaySeconds:0.0} s",
                    script.Name, LockTimeout.TotalSeconds, retry.RetryDelay.TotalSeconds);
                return ValueTask.CompletedTask;
            },
        })
        .Build();

    private static void CheckUnchanged(MigrationScript script, string appliedChecksum)
    {
        if (appliedChecksum != script.Checksum)
        {
            throw new SchemaMismatchException(
                $"sql/{script.Name} was changed after it was applied to this database. " +
                "Shipped migrations are never edited: restore it and add the change as a new script.");
        }
    }

    /// <summary>Applies <paramref name="script"/> unless another runner did since the journal was read; false if it did.</summary>
    private async Task<bool> ApplyAsync(NpgsqlConnection connection, MigrationScript script, CancellationToken cancellationToken)
    {
        await using var transaction = await LockedTransactionAsync(connection, cancellationToken);
        var appliedMeanwhile = await connection.ExecuteScalarAsync<string?>(new CommandDefinition(
            "SELECT checksum FROM schema_migrations WHERE name = @Name", script, transaction, cancellationToken: cancellationToken));
        if (appliedMeanwhile is not null)
        {
            CheckUnchanged(script, appliedMeanwhile);
            return false;
        }

        logger.LogInformation("Applying migration {Script}", script.Name);
        await connection.ExecuteAsync(new CommandDefinition(
            "SELECT set_config('lock_timeout', @milliseconds, true)", new { milliseconds = ((int)LockTimeout.TotalMilliseconds).ToString(CultureInfo.InvariantCulture) },
            transaction, cancellationToken: cancellationToken));
        try
        {
            await connection.ExecuteAsync(new CommandDefinition(script.Sql, transaction: transaction, commandTimeout: NoTimeout, cancellationToken: cancellationToken));
        }
        catch (PostgresException e) when (e.SqlState != PostgresErrorCodes.LockNotAvailable)
        {
            throw new InvalidOperationException($"sql/{script.Name} failed: {e.MessageText}", e);
        }

        const string journal = "INSERT INTO schema_migrations (name, checksum) VALUES (@Name, @Checksum)";
        await connection.ExecuteAsync(new CommandDefinition(journal, script, transaction, cancellationToken: cancellationToken));
        await transaction.CommitAsync(cancellationToken);
        return true;
    }

    /// <summary>A transaction holding the migrations' lock until it ends; while another runner holds it, logged and waited for.</summary>
    private async Task<NpgsqlTransaction> LockedTransactionAsync(NpgsqlConnection connection, CancellationToken cancellationToken)
    {
        var transaction = await connection.BeginTransactionAsync(cancellationToken);
        try
        {
            var key = new { key = AdvisoryLockKey };
            if (!await connection.ExecuteScalarAsync<bool>(new CommandDefinition(
                "SELECT pg_try_advisory_xact_lock(@key)", key, transaction, cancellationToken: cancellationToken)))
            {
                logger.LogInformation("Another instance is migrating the database; waiting for it to finish");
                await connection.ExecuteAsync(new CommandDefinition(
                    "SELECT pg_advisory_xact_lock(@key)", key, transaction, commandTimeout: NoTimeout, cancellationToken: cancellationToken));
            }
            return transaction;
        }
        catch
        {
            await transaction.DisposeAsync();
            throw;
        }
    }

    private static List<MigrationScript> LoadEmbeddedScripts()
    {
        var assembly = typeof(MigrationRunner).Assembly;
        return assembly.GetManifestResourceNames()
            .Where(name => name.StartsWith("sql/", StringComparison.Ordinal) && name.EndsWith(".sql", StringComparison.Ordinal))
            .Order(StringComparer.Ordinal)
            .Select(name => MigrationScript.Load(assembly, name))
            .ToList();
    }
}

internal sealed record MigrationScript(string Name, string Sql, string Checksum)
{
    public static MigrationScript Load(Assembly assembly, string resourceName)
    {
        using var stream = assembly.GetManifestResourceStream(resourceName)
            ?? throw new InvalidOperationException($"Embedded migration {resourceName} is missing.");
        using var reader = new StreamReader(stream, Encoding.UTF8);
        var sql = reader.ReadToEnd().Replace("\r\n", "\n", StringComparison.Ordinal);
        var checksum = Convert.ToHexStringLower(SHA256.HashData(Encoding.UTF8.GetBytes(sql)));
        return new MigrationScript(resourceName["sql/".Length..], sql, checksum);
    }
}

/// <summary>The database's schema is not one this version can run against: it refuses to start rather than guess.</summary>
internal sealed class SchemaMismatchException(string message) : InvalidOperationException(message);
