using System.Diagnostics;
using System.Net;
using System.Net.Sockets;

namespace Subscriptions.Benchmarks;

/// <summary>
/// Postfix's <c>smtp-sink</c> (the receiver) and <c>smtp-source</c> (the ceiling: the fastest plain SMTP
/// client here), taken from Debian's postfix package without installing a mail server:
/// <c>apt-get download postfix &amp;&amp; dpkg -x postfix_*.deb DIR</c>.
/// </summary>
internal sealed class Postfix(string root)
{
    private string Sbin => Path.Combine(root, "usr", "sbin");
    private string Libraries => Path.Combine(root, "usr", "lib", "postfix");

    public static async Task<Postfix> LocateAsync()
    {
        var root = Environment.GetEnvironmentVariable("SUBSCRIPTIONS_POSTFIX_DIR")
            ?? Path.Combine(Environment.GetFolderPath(Environment.SpecialFolder.UserProfile), ".cache", "subscriptions-bench", "postfix");
        var postfix = new Postfix(root);
        if (File.Exists(Path.Combine(postfix.Sbin, "smtp-sink")))
        {
            return postfix;
        }
        Console.WriteLine($"Fetching smtp-sink and smtp-source from Debian's postfix package into {root}");
        var download = Path.Combine(Path.GetTempPath(), $"postfix-deb-{Guid.NewGuid():N}");
        Directory.CreateDirectory(download);
        // apt drops to the _apt user to download; that user must be able to write the folder.
        if (!OperatingSystem.IsWindows())
        {
            File.SetUnixFileMode(download, (UnixFileMode)0b111_111_111);
        }
        try
        {
            await RunAsync("apt-get", download, "download", "postfix");
        }
        catch (InvalidOperationException)
        {
            // A fresh machine's package lists are empty or stale: refresh them once and try again.
            Console.WriteLine("Refreshing the package lists (apt-get update)");
            await RunAsync("apt-get", download, "update", "-qq");
            await RunAsync("apt-get", download, "download", "postfix");
        }
        var package = Directory.GetFiles(download, "postfix_*.deb").Single();
        Directory.CreateDirectory(root);
        await RunAsync("dpkg", download, "-x", package, root);
        return postfix;
    }

    /// <summary>Starts <c>smtp-sink</c> on a free loopback port; it accepts and discards every message.</summary>
    public async Task<(Process Sink, int Port)> StartSinkAsync()
    {
        var port = FreePort();
        var arguments = new List<string>();
        if (Environment.UserName == "root")
        {
            arguments.AddRange(["-u", "nobody"]); // smtp-sink refuses to keep root privileges
        }
        arguments.AddRange([$"127.0.0.1:{port}", "1024"]);
        var sink = Start("smtp-sink", arguments);
        for (var i = 0; i < 100; i++)
        {
            try
            {
                using var client = new TcpClient();
                await client.ConnectAsync(IPAddress.Loopback, port);
                return (sink, port);
            }
            catch (SocketException)
            {
                await Task.Delay(50);
            }
        }
        throw new InvalidOperationException("smtp-sink did not start listening.");
    }

    /// <summary>
    /// Sends <paramref name="messages"/> messages of <paramref name="size"/> bytes over <paramref name="sessions"/>
    /// connections kept open (<c>-d</c>) and returns how long it took.
    /// </summary>
    public async Task<TimeSpan> RunSourceAsync(int port, int messages, int size, int sessions)
    {
        var stopwatch = Stopwatch.StartNew();
        using var source = Start("smtp-source", [
            "-d", "-s", sessions.ToString(System.Globalization.CultureInfo.InvariantCulture),
            "-m", messages.ToString(System.Globalization.CultureInfo.InvariantCulture),
            "-l", size.ToString(System.Globalization.CultureInfo.InvariantCulture),
            "-f", "papers@bench.example", "-t", "reader@bench.example", $"127.0.0.1:{port}"]);
        var errors = source.StandardError.ReadToEndAsync();
        await source.WaitForExitAsync();
        stopwatch.Stop();
        if (source.ExitCode != 0)
        {
            throw new InvalidOperationException($"smtp-source failed: {await errors}");
        }
        return stopwatch.Elapsed;
    }

    private Process Start(string program, IEnumerable<string> arguments)
    {
        var start = new ProcessStartInfo(Path.Combine(Sbin, program)) { RedirectStandardOutput = true, RedirectStandardError = true };
        foreach (var argument in arguments)
        {
            start.ArgumentList.Add(argument);
        }
        start.Environment["LD_LIBRARY_PATH"] = Libraries;
        return Process.Start(start) ?? throw new InvalidOperationException($"Could not start {program}");
    }

    /// <summary>A loopback port nothing listens on right now.</summary>
    public static int FreePort()
    {
        using var probe = new TcpListener(IPAddress.Loopback, 0);
        probe.Start();
        return ((IPEndPoint)probe.LocalEndpoint).Port;
    }

    /// <summary>Runs a program to its end; throws, with what it wrote to standard error, unless it exits with 0.</summary>
    public static async Task RunAsync(string program, string directory, params string[] arguments)
    {
        var start = new ProcessStartInfo(program) { WorkingDirectory = directory, RedirectStandardOutput = true, RedirectStandardError = true };
        start.Environment["DEBIAN_FRONTEND"] = "noninteractive"; // apt-get never asks
        foreach (var argument in arguments)
        {
            start.ArgumentList.Add(argument);
        }
        using var process = Process.Start(start) ?? throw new InvalidOperationException($"Could not start {program}");
        var output = process.StandardOutput.ReadToEndAsync();
        var errors = process.StandardError.ReadToEndAsync();
        await process.WaitForExitAsync();
        await output;
        if (process.ExitCode != 0)
        {
            throw new InvalidOperationException($"{program} {string.Join(' ', arguments)} failed: {await errors}");
        }
    }
}
