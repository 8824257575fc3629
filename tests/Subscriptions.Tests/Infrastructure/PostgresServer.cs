using System.Diagnostics;
using Microsoft.Extensions.Logging.Abstractions;
using Npgsql;
using Subscriptions.Database;

namespace Subscriptions.Tests.Infrastructure;

/// <summary>
/// One throwaway PostgreSQL cluster for the whole test run: <c>initdb</c> + <c>pg_ctl</c> in a temporary
/// folder, fsync off, reachable only through a Unix socket. The migrations are applied once to a
/// template database; every test class gets its own copy of it (<see cref="CreateDatabaseAsync"/>).
/// </summary>
internal static class PostgresServer
{
    private const string TemplateDatabase = "subscriptions_template";
    private const int Port = 5432;
    private static readonly Lazy<Task<string>> Started = new(StartAsync);
    private static int _databaseCount;

    /// <summary>Extra <c>-c name=value</c> server settings, set before the first database is made (the benchmark sizes the buffers).</summary>
    public static string ExtraSettings { get; set; } = "";

    /// <summary>A new database holding the migrated schema, and its connection string.</summary>
    public static async Task<string> CreateDatabaseAsync(string prefix = "test", bool migrated = true)
    {
        var socketDirectory = await Started.Value;
        var name = $"{prefix}_{Environment.ProcessId}_{Interlocked.Increment(ref _databaseCount)}";
        await using (var admin = new NpgsqlConnection(ConnectionString(socketDirectory, "postgres")))
        {
            await admin.OpenAsync();
            var template = migrated ? TemplateDatabase : "template0";
            await using var create = new NpgsqlCommand($"CREATE DATABASE \"{name}\" TEMPLATE \"{template}\"", admin);
            await create.ExecuteNonQueryAsync();
        }
        return ConnectionString(socketDirectory, name);
    }

    public static async Task DropDatabaseAsync(string connectionString)
    {
        var builder = new NpgsqlConnectionStringBuilder(connectionString);
        NpgsqlConnection.ClearAllPools();
        await using var admin = new NpgsqlConnection(ConnectionString(builder.Host!, "postgres"));
        await admin.OpenAsync();
        await using var drop = new NpgsqlCommand($"DROP DATABASE IF EXISTS \"{builder.Database}\" WITH (FORCE)", admin);
        await drop.ExecuteNonQueryAsync();
    }

    private static string ConnectionString(string socketDirectory, string database) =>
        new NpgsqlConnectionStringBuilder
        {
            Host = socketDirectory,
            Port = Port,
            Username = "postgres",
            Database = database,
            MaxPoolSize = 20,
        }.ConnectionString;

    private static async Task<string> StartAsync()
    {
        var binaries = FindBinaries();
        var root = Path.Combine(Path.GetTempPath(), $"subscriptions-tests-{Environment.ProcessId}-{Guid.NewGuid():N}"[..48]);
        var data = Path.Combine(root, "data");
        var socket = Path.Combine(root, "run");
        Directory.CreateDirectory(socket);
        if (IsRoot)
        {
            Run("chown", "-R", "postgres:postgres", root);
        }

        RunAsPostgres(Path.Combine(binaries, "initdb"), "-D", data, "-U", "postgres", "-A", "trust", "-E", "UTF8", "--locale=C", "--no-sync");
        RunAsPostgres(Path.Combine(binaries, "pg_ctl"), "-D", data, "-l", Path.Combine(root, "postgres.log"), "-w", "-o",
            $"-p {Port} -k {socket} -c listen_addresses='' -c fsync=off -c synchronous_commit=off -c full_page_writes=off -c max_connections=300 {ExtraSettings}",
            "start");
        AppDomain.CurrentDomain.ProcessExit += (_, _) =>
        {
            try
            {
                RunAsPostgres(Path.Combine(binaries, "pg_ctl"), "-D", data, "-m", "immediate", "stop");
                Directory.Delete(root, recursive: true);
            }
            catch (Exception e) when (e is InvalidOperationException or IOException)
            {
                // Leaving a stopped cluster's files in /tmp is harmless.
            }
        };

        await using (var admin = new NpgsqlConnection(ConnectionString(socket, "postgres")))
        {
            await admin.OpenAsync();
            await using var create = new NpgsqlCommand($"CREATE DATABASE {TemplateDatabase}", admin);
            await create.ExecuteNonQueryAsync();
        }
        // The same runner the service uses, so the tests exercise the real migrations.
        await using (var dataSource = NpgsqlDataSource.Create(ConnectionString(socket, TemplateDatabase)))
        {
            await new MigrationRunner(dataSource, NullLogger<MigrationRunner>.Instance).ApplyPendingAsync(CancellationToken.None);
        }
        NpgsqlConnection.ClearAllPools();
        return socket;
    }

    private static bool IsRoot => Environment.UserName == "root";

    private static string FindBinaries()
    {
        foreach (var directory in (Environment.GetEnvironmentVariable("PATH") ?? "").Split(':'))
        {
            var pgCtl = Path.Combine(directory, "pg_ctl");
            if (File.Exists(pgCtl))
            {
                return Path.GetDirectoryName(new FileInfo(pgCtl).ResolveLinkTarget(returnFinalTarget: true)?.FullName ?? pgCtl)!;
            }
        }
        return Directory.Exists("/usr/lib/postgresql")
            ? Directory.GetDirectories("/usr/lib/postgresql").Select(d => Path.Combine(d, "bin")).Where(d => File.Exists(Path.Combine(d, "pg_ctl"))).Order().LastOrDefault()
              ?? throw new InvalidOperationException("PostgreSQL binaries (initdb, pg_ctl) not found")
            : throw new InvalidOperationException("PostgreSQL binaries (initdb, pg_ctl) not found on PATH or under /usr/lib/postgresql");
    }

    // PostgreSQL refuses to run as root.
    private static void RunAsPostgres(string program, params string[] arguments)
    {
        if (IsRoot)
        {
            Run("runuser", ["-u", "postgres", "--", program, .. arguments]);
        }
        else
        {
            Run(program, arguments);
        }
    }

    private static void Run(string program, params string[] arguments)
    {
        var start = new ProcessStartInfo(program) { RedirectStandardOutput = true, RedirectStandardError = true };
        foreach (var argument in arguments)
        {
            start.ArgumentList.Add(argument);
        }
        using var process = Process.Start(start) ?? throw new InvalidOperationException($"Could not start {program}");
        var output = process.StandardOutput.ReadToEndAsync();
        var error = process.StandardError.ReadToEndAsync();
        process.WaitForExit();
        if (process.ExitCode != 0)
        {
            throw new InvalidOperationException(
                $"{program} {string.Join(' ', arguments)} exited with {process.ExitCode}:\n{output.Result}\n{error.Result}");
        }
    }
}
