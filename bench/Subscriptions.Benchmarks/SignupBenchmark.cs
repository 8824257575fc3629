using System.Diagnostics;
using System.Globalization;
using System.Net;
using System.Text.RegularExpressions;
using Npgsql;

namespace Subscriptions.Benchmarks;

/// <summary>
/// Issue 16: the signup endpoint under a burst, measured with <c>wrk</c> against the service binary and a real
/// PostgreSQL with the server's default <c>max_connections</c> (100), at 20 and 200 connections; the static signup
/// page (<c>GET /</c>) beside it as the in-process baseline. Every signup is a new address.
/// </summary>
internal static partial class SignupBenchmark
{
    private const string SignupScript = """
        -- Each request a new address: the run's start time, the thread's number and a count within the thread.
        local threads = 0
        function setup(thread)
          threads = threads + 1
          thread:set("thread_number", threads)
        end
        function init(args)
          prefix = os.time() .. "-" .. thread_number
          counter = 0
        end
        function request()
          counter = counter + 1
          local body = '{"email":"wrk-' .. prefix .. '-' .. counter .. '@bench.example","topics":["lidar","depth estimation"]}'
          return wrk.format("POST", "/subscriptions", {["Content-Type"] = "application/json"}, body)
        end
        """;

    private sealed record Result(string Name, int Connections, double RequestsPerSecond, double P50, double P99, long Requests, long NotAccepted, long SocketErrors);

    public static async Task RunAsync(int seconds)
    {
        var wrk = await LocateWrkAsync();
        var connectionString = new NpgsqlConnectionStringBuilder(await Subscriptions.Tests.Infrastructure.PostgresServer.CreateDatabaseAsync("bench"));
        connectionString.Remove("Maximum Pool Size"); // as an operator writes it: the service's own pool default applies
        var port = Postfix.FreePort();
        var pickup = Directory.CreateTempSubdirectory("subscriptions-bench-outbox-");
        var script = Path.Combine(pickup.FullName, "signup.lua");
        await File.WriteAllTextAsync(script, SignupScript);
        Console.WriteLine($"Signup burst benchmark: wrk, {seconds} s per row after a 5 s warm-up, the service binary on 127.0.0.1:{port}");
        using var service = StartService(connectionString.ConnectionString, port, pickup.FullName);
        var errors = new List<string>();
        service.ErrorDataReceived += (_, line) =>
        {
            if (line.Data is { } text)
            {
                lock (errors)
                {
                    errors.Add(text);
                }
            }
        };
        service.BeginErrorReadLine();
        service.BeginOutputReadLine();
        try
        {
            await WaitUntilReadyAsync(port);
            var url = $"http://127.0.0.1:{port}";
            var results = new List<Result>();
            foreach (var connections in new[] { 20, 200 })
            {
                await RunWrkAsync(wrk, url + "/subscriptions", connections, 5, script);
                results.Add(Parse($"POST /subscriptions", connections, await RunWrkAsync(wrk, url + "/subscriptions", connections, seconds, script)));
            }
            await RunWrkAsync(wrk, url + "/", 200, 5, script: null);
            results.Add(Parse("GET /", 200, await RunWrkAsync(wrk, url + "/", 200, seconds, script: null)));

            Console.WriteLine();
            Console.WriteLine("| request | connections | requests/s | p50 | p99 | requests | not 2xx | socket errors |");
            Console.WriteLine("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |");
            foreach (var r in results)
            {
                Console.WriteLine(string.Create(CultureInfo.InvariantCulture,
                    $"| {r.Name} | {r.Connections} | {r.RequestsPerSecond:N0} | {r.P50:F1} ms | {r.P99:F1} ms | {r.Requests:N0} | {r.NotAccepted:N0} | {r.SocketErrors:N0} |"));
            }
            var signups = results.Where(r => r.Name.StartsWith("POST", StringComparison.Ordinal)).Sum(r => r.Requests);
            var stored = await BenchData.ScalarAsync(connectionString.ConnectionString, "SELECT count(*) FROM subscribers");
            int tooManyClients;
            lock (errors)
            {
                tooManyClients = errors.Count(line => line.Contains("53300", StringComparison.Ordinal));
            }
            Console.WriteLine($"Signups measured: {signups:N0}; subscribers stored, warm-ups included: {stored:N0}; service log lines naming 53300 (too many clients): {tooManyClients}");
        }
        finally
        {
            service.Kill(entireProcessTree: true);
            await service.WaitForExitAsync();
            pickup.Delete(recursive: true);
        }
    }

    private static Process StartService(string connectionString, int port, string pickup)
    {
        var start = new ProcessStartInfo("dotnet") { RedirectStandardOutput = true, RedirectStandardError = true, WorkingDirectory = pickup };
        start.ArgumentList.Add(Path.Combine(AppContext.BaseDirectory, "Subscriptions.dll"));
        start.ArgumentList.Add("serve");
        start.Environment["ConnectionStrings__Postgres"] = connectionString;
        start.Environment["ASPNETCORE_URLS"] = $"http://127.0.0.1:{port}";
        start.Environment["App__BaseUrl"] = $"http://127.0.0.1:{port}";
        start.Environment["App__TokenSecret"] = "a-secret-used-only-by-the-benchmark-run";
        // One client (wrk) sends everything: the per-client limit would measure the rate limiter, not the endpoint.
        start.Environment["App__SignupsPerMinute"] = "10000000";
        start.Environment["Mail__PickupDirectory"] = Path.Combine(pickup, "outbox");
        start.Environment["Digest__Enabled"] = "false";
        start.Environment["Logging__LogLevel__Default"] = "Warning";
        return Process.Start(start) ?? throw new InvalidOperationException("Could not start the service binary.");
    }

    private static async Task WaitUntilReadyAsync(int port)
    {
        using var client = new HttpClient();
        for (var i = 0; i < 600; i++)
        {
            try
            {
                if ((await client.GetAsync($"http://127.0.0.1:{port}/healthz/ready")).StatusCode == HttpStatusCode.OK)
                {
                    return;
                }
            }
            catch (HttpRequestException)
            {
            }
            await Task.Delay(100);
        }
        throw new InvalidOperationException("The service did not become ready within a minute.");
    }

    private static async Task<string> RunWrkAsync(string wrk, string url, int connections, int seconds, string? script)
    {
        var start = new ProcessStartInfo(wrk) { RedirectStandardOutput = true, RedirectStandardError = true };
        foreach (var argument in new[] { "-t", "2", "-c", connections.ToString(CultureInfo.InvariantCulture), "-d", $"{seconds}s", "--timeout", "10s", "--latency" })
        {
            start.ArgumentList.Add(argument);
        }
        if (script is not null)
        {
            start.ArgumentList.Add("-s");
            start.ArgumentList.Add(script);
        }
        start.ArgumentList.Add(url);
        using var process = Process.Start(start) ?? throw new InvalidOperationException("Could not start wrk");
        var output = await process.StandardOutput.ReadToEndAsync();
        await process.WaitForExitAsync();
        return process.ExitCode == 0 ? output : throw new InvalidOperationException($"wrk failed: {await process.StandardError.ReadToEndAsync()}");
    }

    private static Result Parse(string name, int connections, string output)
    {
        double Number(Regex pattern) => double.Parse(pattern.Match(output).Groups[1].Value, CultureInfo.InvariantCulture);
        var socketErrors = SocketErrors().Match(output);
        return new Result(name, connections,
            Number(RequestsPerSecond()),
            Milliseconds(Percentile(output, "50%")),
            Milliseconds(Percentile(output, "99%")),
            (long)Number(RequestCount()),
            NotAccepted().Match(output) is { Success: true } notAccepted ? long.Parse(notAccepted.Groups[1].Value, CultureInfo.InvariantCulture) : 0,
            socketErrors.Success ? socketErrors.Groups.Values.Skip(1).Sum(group => long.Parse(group.Value, CultureInfo.InvariantCulture)) : 0);
    }

    private static string Percentile(string output, string percentile) =>
        Regex.Match(output, $@"^\s+{Regex.Escape(percentile)}\s+(\S+)", RegexOptions.Multiline).Groups[1].Value;

    /// <summary>wrk's durations: 512.00us, 1.23ms, 2.01s, 1.00m.</summary>
    private static double Milliseconds(string duration)
    {
        var match = Duration().Match(duration);
        var value = double.Parse(match.Groups[1].Value, CultureInfo.InvariantCulture);
        return match.Groups[2].Value switch
        {
            "us" => value / 1000,
            "ms" => value,
            "s" => value * 1000,
            "m" => value * 60_000,
            _ => throw new FormatException($"Unknown wrk duration \"{duration}\""),
        };
    }

    private static async Task<string> LocateWrkAsync()
    {
        foreach (var directory in (Environment.GetEnvironmentVariable("PATH") ?? "").Split(':'))
        {
            var candidate = Path.Combine(directory, "wrk");
            if (File.Exists(candidate))
            {
                return candidate;
            }
        }
        if (Environment.UserName != "root")
        {
            throw new InvalidOperationException("wrk is not installed: sudo apt-get install wrk");
        }
        Console.WriteLine("Installing wrk (apt-get install wrk)");
        try
        {
            await Postfix.RunAsync("apt-get", Path.GetTempPath(), "install", "-y", "-qq", "wrk");
        }
        catch (InvalidOperationException)
        {
            // A fresh machine's package lists are empty or stale: refresh them once and try again.
            Console.WriteLine("Refreshing the package lists (apt-get update)");
            await Postfix.RunAsync("apt-get", Path.GetTempPath(), "update", "-qq");
            await Postfix.RunAsync("apt-get", Path.GetTempPath(), "install", "-y", "-qq", "wrk");
        }
        return "/usr/bin/wrk";
    }

    [GeneratedRegex(@"Requests/sec:\s+([\d.]+)")]
    private static partial Regex RequestsPerSecond();

    [GeneratedRegex(@"(\d+) requests in")]
    private static partial Regex RequestCount();

    [GeneratedRegex(@"Non-2xx or 3xx responses:\s+(\d+)")]
    private static partial Regex NotAccepted();

    [GeneratedRegex(@"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)")]
    private static partial Regex SocketErrors();

    [GeneratedRegex(@"^([\d.]+)(us|ms|s|m)$")]
    private static partial Regex Duration();
}
