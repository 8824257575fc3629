using System.Diagnostics;
using Dapper;
using Npgsql;

namespace Subscriptions.Tests.Infrastructure;

/// <summary>
/// PgBouncer (Debian's <c>pgbouncer</c>) in transaction mode in front of one test database, as docs/operations.md suggests
/// for many instances: started with a configuration of its own in a temporary folder, on 127.0.0.1 and a free port, as
/// the <c>postgres</c> user when the tests run as root (it refuses root). Its idle server connections are handed out
/// oldest first (<c>server_round_robin</c>), and a few are opened at the start, so that one client's transactions in a row
/// land on different server connections, as on a busy pooler; and nothing resets a server connection between clients.
/// </summary>
public sealed class PgBouncerServer : IAsyncDisposable
{
    private const int ServerConnections = 5;
    private readonly string _root = Path.Combine(Path.GetTempPath(), $"subscriptions-pgbouncer-{Guid.NewGuid():N}"[..40]);
    private Process? _process;

    private PgBouncerServer()
    {
    }

    /// <summary>
    /// A connection string to the database through PgBouncer, with the settings docs/operations.md gives for it: no reset
    /// on close, and no prepared statements (before PgBouncer 1.21, a statement prepared on one server connection is
    /// unknown to the others).
    /// </summary>
    public string ConnectionString { get; private set; } = "";

    public static async Task<PgBouncerServer> StartAsync(string databaseConnectionString)
    {
        var server = new PgBouncerServer();
        try
        {
            await server.StartAsync(new NpgsqlConnectionStringBuilder(databaseConnectionString));
            return server;
        }
        catch
        {
            await server.DisposeAsync();
            throw;
        }
    }

    private async Task StartAsync(NpgsqlConnectionStringBuilder database)
    {
        var port = LocalPrograms.FreePort();
        Directory.CreateDirectory(_root);
        var isRoot = LocalPrograms.IsRoot;
        var config = Path.Combine(_root, "pgbouncer.ini");
        await File.WriteAllTextAsync(config, $"""
            [databases]
            {database.Database} = host={database.Host} port={database.Port} dbname={database.Database} user={database.Username}

            [pgbouncer]
            listen_addr = 127.0.0.1
            listen_port = {port}
            unix_socket_dir =
            auth_type = any
            pool_mode = transaction
            server_round_robin = 1
            default_pool_size = 20
            max_client_conn = 200
            ignore_startup_parameters = extra_float_digits
            logfile = {_root}/pgbouncer.log
            pidfile = {_root}/pgbouncer.pid
            """);
        if (isRoot)
        {
            LocalPrograms.Run("chown", "-R", "postgres:postgres", _root);
        }
        var start = new ProcessStartInfo(LocalPrograms.Find("pgbouncer", "pgbouncer")) { RedirectStandardOutput = true, RedirectStandardError = true };
        if (isRoot)
        {
            start.ArgumentList.Add("-u");
            start.ArgumentList.Add("postgres");
        }
        start.ArgumentList.Add(config);
        _process = Process.Start(start) ?? throw new InvalidOperationException("Could not start pgbouncer");
        _process.OutputDataReceived += (_, _) => { };
        _process.ErrorDataReceived += (_, _) => { };
        _process.BeginOutputReadLine();
        _process.BeginErrorReadLine();

        ConnectionString = new NpgsqlConnectionStringBuilder
        {
            Host = "127.0.0.1",
            Port = port,
            Database = database.Database,
            Username = database.Username,
            NoResetOnClose = true,
            MaxAutoPrepare = 0,
            MaxPoolSize = 20,
        }.ConnectionString;
        await LocalPrograms.WaitUntilListeningAsync(_process, port, LogAsync);
        await OpenServerConnectionsAsync();
    }

    /// <summary>Server connections in the pool for one client's transactions to go round (PgBouncer opens one for each transaction under way at once).</summary>
    private async Task OpenServerConnectionsAsync()
    {
        var clients = new List<NpgsqlConnection>();
        try
        {
            for (var i = 0; i < ServerConnections; i++)
            {
                var client = new NpgsqlConnection($"{ConnectionString};Pooling=false");
                clients.Add(client);
                await client.OpenAsync();
                await client.ExecuteAsync("BEGIN; SELECT 1"); // holds a server connection until the transaction ends
            }
            foreach (var client in clients)
            {
                await client.ExecuteAsync("COMMIT"); // gives it back to the pool (a client gone mid-transaction closes it)
            }
        }
        finally
        {
            foreach (var client in clients)
            {
                await client.DisposeAsync();
            }
        }
    }

    private async Task<string> LogAsync()
    {
        var log = Path.Combine(_root, "pgbouncer.log");
        return File.Exists(log) ? await File.ReadAllTextAsync(log) : "(no log)";
    }

    public async ValueTask DisposeAsync()
    {
        NpgsqlConnection.ClearAllPools();
        if (_process is { HasExited: false })
        {
            _process.Kill();
            await _process.WaitForExitAsync();
        }
        _process?.Dispose();
        try
        {
            Directory.Delete(_root, recursive: true);
        }
        catch (IOException)
        {
            // Leaving a stopped pooler's files in /tmp is harmless.
        }
    }
}
