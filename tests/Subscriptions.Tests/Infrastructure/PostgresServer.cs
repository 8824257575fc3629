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
    private static readonly Lazy<Task<PostgresCluster>> Shared = new(() => PostgresCluster.StartAsync(ExtraSettings ?? ""));

    /// <summary>Extra <c>-c name=value</c> server settings, set before the first database is made (the benchmark sizes the buffers).</summary>
    public static string? ExtraSettings { get; set; }

    /// <summary>A new database holding the migrated schema, and its connection string.</summary>
    public static async Task<string> CreateDatabaseAsync(string prefix = "test", bool migrated = true) =>
        await (await Shared.Value).CreateDatabaseAsync(prefix, migrated);

    public static async Task DropDatabaseAsync(string connectionString) =>
        await (await Shared.Value).DropDatabaseAsync(connectionString);
}

/// <summary>
/// A PostgreSQL cluster of its own: the shared one of <see cref="PostgresServer"/>, or one a test stops,
/// restarts and hangs without disturbing the others.
/// </summary>
internal sealed class PostgresCluster : IAsyncDisposable
{
    private const string TemplateDatabase = "subscriptions_template";
    private const int Port = 5432;
    private static int _databaseCount;
    private readonly string _binaries;
    private readonly string _root;
    private readonly string _settings;

    private PostgresCluster(string binaries, string root, string settings)
    {
        _binaries = binaries;
        _root = root;
        _settings = settings;
    }

    private string Data => Path.Combine(_root, "data");

    private string SocketDirectory => Path.Combine(_root, "run");

    /// <summary>A new database holding the migrated schema, and its connection string.</summary>
    public async Task<string> CreateDatabaseAsync(string prefix = "test", bool migrated = true)
    {
        var name = $"{prefix}_{Environment.ProcessId}_{Interlocked.Increment(ref _databaseCount)}";
        await using (var admin = new NpgsqlConnection(ConnectionString(SocketDirectory, "postgres")))
        {
            await admin.OpenAsync();
            var template = migrated ? TemplateDatabase : "template0";
            await using var create = new NpgsqlCommand($"CREATE DATABASE \"{name}\" TEMPLATE \"{template}\"", admin);
            await create.ExecuteNonQueryAsync();
        }
        return ConnectionString(SocketDirectory, name);
    }

    public async Task DropDatabaseAsync(string connectionString)
    {
        var builder = new NpgsqlConnectionStringBuilder(connectionString);
        NpgsqlConnection.ClearAllPools();
        await using var admin = new NpgsqlConnection(ConnectionString(builder.Host!, "postgres"));
        await admin.OpenAsync();
        await using var drop = new NpgsqlCommand($"DROP DATABASE IF EXISTS \"{builder.Database}\" WITH (FORCE)", admin);
        await drop.ExecuteNonQueryAsync();
    }

    /// <summary>Stops the server at once, as a crash or an operator would.</summary>
    public void Stop() => RunAsPostgres(Path.Combine(_binaries, "pg_ctl"), "-D", Data, "-m", "immediate", "-w", "stop");

    public void Start() => RunAsPostgres(Path.Combine(_binaries, "pg_ctl"), "-D", Data, "-l", Path.Combine(_root, "postgres.log"), "-w", "-o",
        $"-p {Port} -k {SocketDirectory} -c listen_addresses='' -c fsync=off -c synchronous_commit=off -c full_page_writes=off -c max_connections=300 {_settings}",
        "start");

    /// <summary>Freezes (SIGSTOP) or thaws (SIGCONT) the server and its backends: up, but answering nothing.</summary>
    public void Hang(bool hung)
    {
        var postmaster = File.ReadLines(Path.Combine(Data, "postmaster.pid")).First().Trim();
        var signal = hung ? "-STOP" : "-CONT";
        Run("pkill", signal, "-P", postmaster);
        Run("kill", signal, postmaster);
    }

    public ValueTask DisposeAsync()
    {
        try
        {
            Stop();
            Directory.Delete(_root, recursive: true);
        }
        catch (Exception e) when (e is InvalidOperationException or IOException)
        {
            // Leaving a stopped cluster's files in /tmp is harmless.
        }
        return ValueTask.CompletedTask;
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

    private const string RootPrefix = "subscriptions-tests-";

    public static async Task<PostgresCluster> StartAsync(string settings = "")
    {
        var binaries = FindBinaries();
        StopLeftovers(binaries);
        var root = Path.Combine(Path.GetTempPath(), $"{RootPrefix}{Environment.ProcessId}-{Guid.NewGuid():N}"[..48]);
        var cluster = new PostgresCluster(binaries, root, settings);
        Directory.CreateDirectory(cluster.SocketDirectory);
        if (IsRoot)
        {
            Run("chown", "-R", "postgres:postgres", root);
        }

        RunAsPostgres(Path.Combine(cluster._binaries, "initdb"), "-D", cluster.Data, "-U", "postgres", "-A", "trust", "-E", "UTF8", "--locale=C", "--no-sync");
        cluster.Start();
        AppDomain.CurrentDomain.ProcessExit += (_, _) => cluster.DisposeAsync().AsTask().Wait();

        await using (var admin = new NpgsqlConnection(ConnectionString(cluster.SocketDirectory, "postgres")))
        {
            await admin.OpenAsync();
            await using var create = new NpgsqlCommand($"CREATE DATABASE {TemplateDatabase}", admin);
            await create.ExecuteNonQueryAsync();
        }
        // The same runner the service uses, so the tests exercise the real migrations.
        await using (var dataSource = NpgsqlDataSource.Create(ConnectionString(cluster.SocketDirectory, TemplateDatabase)))
        {
            await new MigrationRunner(dataSource, NullLogger<MigrationRunner>.Instance).ApplyPendingAsync(CancellationToken.None);
        }
        NpgsqlConnection.ClearAllPools();
        return cluster;
    }

    /// <summary>
    /// Stops the clusters of test processes that have ended. Each stops its own on exit, but a test host the test platform
    /// ends before its exit handlers finish (on a slow machine, every run) leaves its cluster running, one more each run.
    /// </summary>
    private static void StopLeftovers(string binaries)
    {
        foreach (var root in Directory.GetDirectories(Path.GetTempPath(), RootPrefix + "*"))
        {
            if (!int.TryParse(Path.GetFileName(root)[RootPrefix.Length..].Split('-')[0], out var owner) || IsRunning(owner))
            {
                continue;
            }
            try
            {
                var data = Path.Combine(root, "data");
                // Only a postmaster that is this folder's: a pid file outlives its process, and its number may be another's now.
                if (PostmasterOf(data) is { } postmaster)
                {
                    Run("kill", "-CONT", postmaster.ToString(System.Globalization.CultureInfo.InvariantCulture)); // left frozen (Hang)
                    RunAsPostgres(Path.Combine(binaries, "pg_ctl"), "-D", data, "-m", "immediate", "-w", "stop");
                }
                Directory.Delete(root, recursive: true);
            }
            catch (Exception e) when (e is InvalidOperationException or IOException or UnauthorizedAccessException)
            {
                // Not ours to stop, or already gone: left as it is.
            }
        }
    }

    /// <summary>The process id of the postmaster running on <paramref name="data"/>, if one is.</summary>
    private static int? PostmasterOf(string data)
    {
        var pidFile = Path.Combine(data, "postmaster.pid");
        if (!File.Exists(pidFile) || !int.TryParse(File.ReadLines(pidFile).FirstOrDefault()?.Trim(), out var pid))
        {
            return null;
        }
        var commandLine = Path.Combine("/proc", pid.ToString(System.Globalization.CultureInfo.InvariantCulture), "cmdline");
        return File.Exists(commandLine) && File.ReadAllText(commandLine).Split('\0').Contains(data) ? pid : null;
    }

    private static bool IsRunning(int processId)
    {
        try
        {
            using var process = Process.GetProcessById(processId);
            return !process.HasExited;
        }
        catch (ArgumentException)
        {
            return false;
        }
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
