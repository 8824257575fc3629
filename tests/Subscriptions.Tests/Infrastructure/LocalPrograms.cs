using System.Diagnostics;
using System.Net;
using System.Net.Sockets;

namespace Subscriptions.Tests.Infrastructure;

/// <summary>What the fixtures that start one of Debian's servers (Dovecot, PgBouncer) share.</summary>
internal static class LocalPrograms
{
    /// <summary>As root, the servers' own processes must run as another user: most refuse root.</summary>
    public static bool IsRoot => Environment.UserName == "root";

    public static int FreePort()
    {
        using var listener = new TcpListener(IPAddress.Loopback, 0);
        listener.Start();
        return ((IPEndPoint)listener.LocalEndpoint).Port;
    }

    /// <summary>Where <paramref name="program"/> is, on PATH or in /usr/sbin; an error that names its package if nowhere.</summary>
    public static string Find(string program, string package)
    {
        var candidates = (Environment.GetEnvironmentVariable("PATH") ?? "").Split(':').Append("/usr/sbin").Select(directory => Path.Combine(directory, program));
        return candidates.FirstOrDefault(File.Exists)
            ?? throw new InvalidOperationException($"{program} not found on PATH or in /usr/sbin: apt-get install {package}");
    }

    /// <summary>
    /// Waits until <paramref name="server"/> accepts connections on 127.0.0.1:<paramref name="port"/>; if it exits first, an
    /// error with what <paramref name="diagnostics"/> finds (its stderr, its log).
    /// </summary>
    public static Task WaitUntilListeningAsync(Process server, int port, Func<Task<string>> diagnostics)
    {
        var name = Path.GetFileName(server.StartInfo.FileName);
        return Eventually.TrueAsync(async () =>
        {
            if (server.HasExited)
            {
                throw new InvalidOperationException($"{name} exited with {server.ExitCode}: {await diagnostics()}");
            }
            using var client = new TcpClient();
            try
            {
                await client.ConnectAsync(IPAddress.Loopback, port);
                return true;
            }
            catch (SocketException)
            {
                return false;
            }
        }, $"{name} to listen on 127.0.0.1:{port}");
    }

    /// <summary>Runs <paramref name="program"/> to its end; an error with what it wrote to stderr if it failed.</summary>
    public static void Run(string program, params string[] arguments)
    {
        var start = new ProcessStartInfo(program) { RedirectStandardError = true };
        foreach (var argument in arguments)
        {
            start.ArgumentList.Add(argument);
        }
        using var process = Process.Start(start) ?? throw new InvalidOperationException($"Could not start {program}");
        process.WaitForExit();
        if (process.ExitCode != 0)
        {
            throw new InvalidOperationException($"{program} {string.Join(' ', arguments)} exited with {process.ExitCode}: {process.StandardError.ReadToEnd()}");
        }
    }
}
