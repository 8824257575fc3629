using Dapper;
using Microsoft.Extensions.Logging.Abstractions;
using Microsoft.Extensions.Logging.Testing;
using Npgsql;
using Subscriptions.Database;
using Subscriptions.Tests.Infrastructure;

namespace Subscriptions.Tests;

public sealed class MigrationTests
{
    [Fact]
    public async Task ARunnerWaitsForAnotherRunnersScriptLongerThanTheCommandTimeout()
    {
        // Another runner holds the migrations' lock (a long script) for longer than the connection's command timeout, which
        // stopped this one's wait, and would have stopped its own long script, at Npgsql's 30 s.
        var connectionString = await PostgresServer.CreateDatabaseAsync("migrations", migrated: false);
        await using var dataSource = NpgsqlDataSource.Create(connectionString + ";Command Timeout=1");
        try
        {
            await using var other = new NpgsqlConnection(connectionString);
            await other.OpenAsync();
            await using var longScript = await other.BeginTransactionAsync();
            await other.ExecuteAsync("SELECT pg_advisory_xact_lock(@key)", new { key = MigrationRunner.AdvisoryLockKey }, longScript);

            var applying = Task.Run(() => new MigrationRunner(dataSource, NullLogger<MigrationRunner>.Instance).ApplyPendingAsync(CancellationToken.None));
            await Task.Delay(TimeSpan.FromSeconds(3));
            Assert.False(applying.IsCompleted, applying.Exception?.ToString());
            await longScript.CommitAsync();

            Assert.Equal(MigrationRunner.Scripts.Select(s => s.Name), await applying);
        }
        finally
        {
            await PostgresServer.DropDatabaseAsync(connectionString);
        }
    }

    [Fact]
    public async Task InstancesMigratingAtTheSameMomentApplyEachScriptOnce()
    {
        var connectionString = await PostgresServer.CreateDatabaseAsync("migrations", migrated: false);
        var dataSources = Enumerable.Range(0, 4).Select(_ => NpgsqlDataSource.Create(connectionString)).ToList();
        try
        {
            var runs = await Task.WhenAll(dataSources.Select(dataSource =>
                Task.Run(() => new MigrationRunner(dataSource, NullLogger<MigrationRunner>.Instance).ApplyPendingAsync(CancellationToken.None))));

            var appliedByAll = runs.SelectMany(applied => applied).ToList();
            Assert.Equal(MigrationRunner.Scripts.Select(s => s.Name), appliedByAll.Order());
            await using var connection = await dataSources[0].OpenConnectionAsync();
            Assert.Equal(MigrationRunner.Scripts.Select(s => s.Name),
                await connection.QueryAsync<string>("SELECT name FROM schema_migrations ORDER BY name"));
            Assert.Equal(0, await connection.ExecuteScalarAsync<long>("SELECT count(*) FROM subscribers"));

            // A later start finds nothing to do.
            Assert.Empty(await new MigrationRunner(dataSources[1], NullLogger<MigrationRunner>.Instance).ApplyPendingAsync(CancellationToken.None));
        }
        finally
        {
            foreach (var dataSource in dataSources)
            {
                await dataSource.DisposeAsync();
            }
            await PostgresServer.DropDatabaseAsync(connectionString);
        }
    }

    [Fact]
    public async Task AMigrationWaitingForATableInUseLetsTheServiceGoOnAndTriesAgain()
    {
        var connectionString = await PostgresServer.CreateDatabaseAsync("busy");
        await using var dataSource = NpgsqlDataSource.Create(connectionString + ";Command Timeout=20");
        var alter = new MigrationScript("9000_alter_a_table_in_use.sql", "ALTER TABLE subscribers ADD COLUMN added_later integer", "checksum");
        try
        {
            // An older replica's long transaction on the table, as a slot's planning reads the subscribers for its whole length.
            await using var planner = await dataSource.OpenConnectionAsync();
            await using var planning = await planner.BeginTransactionAsync();
            await planner.ExecuteAsync("SELECT count(*) FROM subscribers", transaction: planning);

            var logs = new FakeLogCollector();
            var applying = Task.Run(() => new MigrationRunner(dataSource, new FakeLogger<MigrationRunner>(logs), [.. MigrationRunner.Scripts, alter])
                .ApplyPendingAsync(CancellationToken.None));
            await using var service = await dataSource.OpenConnectionAsync();
            await Eventually.TrueAsync(() => service.ExecuteScalarAsync<bool>("""
                SELECT EXISTS (SELECT 1 FROM pg_stat_activity WHERE wait_event_type = 'Lock' AND query LIKE 'ALTER TABLE subscribers%')
                """), "the migration to wait for the table");

            // The service's next statement on the table queued behind the waiting ALTER TABLE until the planning ended; as the
            // planning waited for statements of its own on the table, for good. Now the ALTER TABLE lets go within its lock timeout.
            Assert.Equal(0, await service.ExecuteScalarAsync<long>("SELECT count(*) FROM subscribers"));
            Assert.False(applying.IsCompleted, applying.Exception?.ToString());
            await Eventually.TrueAsync(() => Task.FromResult(logs.GetSnapshot().Any(log => log.Message.StartsWith(
                "sql/9000_alter_a_table_in_use.sql waited 5 s for a table the running service is using", StringComparison.Ordinal))),
                "the migration to say it waited");

            await planning.CommitAsync();
            Assert.Equal(["9000_alter_a_table_in_use.sql"], await applying);
            Assert.Equal(0, await service.ExecuteScalarAsync<long>("SELECT count(added_later) FROM subscribers"));
        }
        finally
        {
            await PostgresServer.DropDatabaseAsync(connectionString);
        }
    }

    [Fact]
    public async Task AScriptEditedAfterItWasAppliedIsRefused()
    {
        var connectionString = await PostgresServer.CreateDatabaseAsync("edited");
        await using var dataSource = NpgsqlDataSource.Create(connectionString);
        await using (var connection = await dataSource.OpenConnectionAsync())
        {
            await connection.ExecuteAsync("UPDATE schema_migrations SET checksum = 'something else' WHERE name = '0001_subscribers.sql'");
        }

        var error = await Assert.ThrowsAsync<SchemaMismatchException>(() =>
            new MigrationRunner(dataSource, NullLogger<MigrationRunner>.Instance).ApplyPendingAsync(CancellationToken.None));

        Assert.Contains("sql/0001_subscribers.sql was changed after it was applied", error.Message);
    }

    [Fact]
    public async Task AReplicaOlderThanTheSchemaRefusesToStart()
    {
        var connectionString = await PostgresServer.CreateDatabaseAsync("newer");
        await using (var dataSource = NpgsqlDataSource.Create(connectionString))
        await using (var connection = await dataSource.OpenConnectionAsync())
        {
            await connection.ExecuteAsync("INSERT INTO schema_migrations (name, checksum) VALUES ('9999_from_the_future.sql', 'x')");
        }

        var (exitCode, output, error) = await ServiceBinary.RunAsync(["serve", "--urls=http://127.0.0.1:0"], new Dictionary<string, string>
        {
            ["ConnectionStrings__Postgres"] = connectionString,
            ["App__TokenSecret"] = "a-secret-for-the-newer-schema-test-only",
            ["Digest__Enabled"] = "false",
        });

        Assert.True(exitCode == 65, $"exited with {exitCode}:\n{error}"); // the whole error, should it end otherwise
        Assert.Contains("migrated by a newer version of this service (9999_from_the_future.sql applied)", error);
        Assert.DoesNotContain("   at ", error);
        // Nor the host's "Hosting failed to start" and its stack trace in the log.
        Assert.DoesNotContain("   at ", output);
    }

    [Theory]
    [InlineData("serve", 0)]
    [InlineData("migrate", 130)]
    public async Task SigtermWhileAnotherInstanceMigratesStopsTheWaitWithNothingHalfApplied(string verb, int exitCode)
    {
        var connectionString = await PostgresServer.CreateDatabaseAsync("migrations", migrated: false);
        try
        {
            await using var other = new NpgsqlConnection(connectionString);
            await other.OpenAsync();
            await using var otherMigrating = await other.BeginTransactionAsync();
            await other.ExecuteAsync("SELECT pg_advisory_xact_lock(@key)", new { key = MigrationRunner.AdvisoryLockKey }, otherMigrating);

            using var process = ServiceBinary.Start([verb, "--urls=http://127.0.0.1:0"], new Dictionary<string, string>
            {
                ["ConnectionStrings__Postgres"] = connectionString,
                ["App__TokenSecret"] = "a-secret-for-the-migration-tests-only",
                ["Digest__Enabled"] = "false",
            });
            var lines = new System.Collections.Concurrent.ConcurrentQueue<string>();
            process.OutputDataReceived += (_, e) => lines.Enqueue(e.Data ?? "");
            process.ErrorDataReceived += (_, e) => lines.Enqueue(e.Data ?? "");
            process.BeginOutputReadLine();
            process.BeginErrorReadLine();
            try
            {
                await Eventually.TrueAsync(() => lines.Any(line => line.Contains("Another instance is migrating the database", StringComparison.Ordinal)),
                    "the instance to say it waits for the other's migrations", TimeSpan.FromSeconds(60));

                using (var kill = System.Diagnostics.Process.Start("kill", ["-TERM", process.Id.ToString(System.Globalization.CultureInfo.InvariantCulture)]))
                {
                    await kill.WaitForExitAsync();
                }
                using var timeout = new CancellationTokenSource(TimeSpan.FromSeconds(20));
                await process.WaitForExitAsync(timeout.Token);
            }
            finally
            {
                if (!process.HasExited)
                {
                    process.Kill(entireProcessTree: true);
                }
            }

            var output = string.Join('\n', lines);
            Assert.True(process.ExitCode == exitCode, $"exited with {process.ExitCode}:\n{output}");
            Assert.Contains("Stopped while migrating the database, before anything else started", output);
            Assert.DoesNotContain("   at ", output);
            await otherMigrating.RollbackAsync();
            Assert.Equal(0, await other.ExecuteScalarAsync<long>("SELECT count(*) FROM pg_tables WHERE tablename = 'schema_migrations'"));
        }
        finally
        {
            await PostgresServer.DropDatabaseAsync(connectionString);
        }
    }
}
