using System.Diagnostics;
using System.Net;
using System.Net.Sockets;

namespace Subscriptions.Tests.Infrastructure;

/// <summary>What the fixtures that start one of Debian's servers (Dovecot, PgBouncer) share.</summary>
internal static class LocalPrograms
{
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
