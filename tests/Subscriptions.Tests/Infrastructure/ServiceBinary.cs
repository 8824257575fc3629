using System.Diagnostics;
using System.Net;

namespace Subscriptions.Tests.Infrastructure;

/// <summary>The service binary run as an operator runs it: <c>dotnet Subscriptions.dll VERB …</c>, with only the given settings.</summary>
public static class ServiceBinary
{
    public static Process Start(string[] arguments, IReadOnlyDictionary<string, string> environment, bool withInput = false)
    {
        var start = new ProcessStartInfo("dotnet")
        {
            RedirectStandardInput = withInput,
            RedirectStandardOutput = true,
            RedirectStandardError = true,
            WorkingDirectory = Path.GetTempPath(),
        };
        start.ArgumentList.Add(Path.Combine(AppContext.BaseDirectory, "Subscriptions.dll"));
        foreach (var argument in arguments)
        {
            start.ArgumentList.Add(argument);
        }
        // Settings of the test process itself must not leak into the service's configuration.
        foreach (var key in start.Environment.Keys.Where(k => k.Contains("__", StringComparison.Ordinal)).ToList())
        {
            start.Environment.Remove(key);
        }
        // Numbers in messages are formatted in the current culture; the tests read them in English.
        start.Environment["LC_ALL"] = "C.UTF-8";
        // The runtime's default wait before hot code is compiled again, optimized, rather than the service's 0 (its
        // runtimeconfig: a daily run's first seconds sent faster). A test's process lives seconds and recompiled its start
        // at once: the command-line tests took half as much CPU again (85-89 s of the machine against 52-60 s).
        start.Environment["DOTNET_TC_CallCountingDelayMs"] = "100";
        // Nor does it live long enough for dynamic PGO to pay: its hot methods were compiled a third time, instrumented
        // first. Off here and in the test host (the test project's TieredPGO), the command-line, digest and slot tests took
        // 161-181 s of the machine's CPU against 187-219 s (four runs each, in turn).
        start.Environment["DOTNET_TieredPGO"] = "0";
        foreach (var (key, value) in environment)
        {
            start.Environment[key] = value;
        }
        return Process.Start(start) ?? throw new InvalidOperationException("Could not start the service binary.");
    }

    /// <summary>
    /// Runs <c>serve</c> with exactly these settings and a free port (<c>ASPNETCORE_URLS</c> on loopback, or as the container
    /// image names it, <c>ASPNETCORE_HTTP_PORTS</c>), once it answers <c>/healthz/live</c>; it is killed when the result is disposed.
    /// </summary>
    public static async Task<Serving> ServeAsync(IReadOnlyDictionary<string, string> environment, bool asTheImageNamesItsPort = false)
    {
        var port = LocalPrograms.FreePort();
        var address = new Uri($"http://127.0.0.1:{port}");
        var process = Start(["serve"], new Dictionary<string, string>(environment)
        {
            [asTheImageNamesItsPort ? "ASPNETCORE_HTTP_PORTS" : "ASPNETCORE_URLS"] = asTheImageNamesItsPort ? $"{port}" : address.ToString(),
        });
        var serving = new Serving(process, address);
        try
        {
            using var client = new HttpClient { BaseAddress = address, Timeout = TimeSpan.FromSeconds(10) };
            await Eventually.TrueAsync(async () =>
            {
                if (process.HasExited)
                {
                    Assert.Fail($"serve exited with {process.ExitCode}:\n{await serving.Error}");
                }
                try
                {
                    return (await client.GetAsync("/healthz/live")).StatusCode == HttpStatusCode.OK;
                }
                catch (HttpRequestException)
                {
                    return false;
                }
            }, "serve to answer /healthz/live", TimeSpan.FromSeconds(60));
            return serving;
        }
        catch
        {
            await serving.DisposeAsync();
            throw;
        }
    }

    public sealed class Serving : IAsyncDisposable
    {
        private readonly Process _process;

        internal Serving(Process process, Uri address)
        {
            _process = process;
            Address = address;
            Error = process.StandardError.ReadToEndAsync();
            _ = process.StandardOutput.ReadToEndAsync();
        }

        public Uri Address { get; }

        public Task<string> Error { get; }

        public async ValueTask DisposeAsync()
        {
            _process.Kill(entireProcessTree: true);
            await _process.WaitForExitAsync();
            _process.Dispose();
        }
    }

    /// <summary>Runs a verb to its end; <paramref name="input"/>, when given, is its standard input.</summary>
    public static async Task<(int ExitCode, string Output, string Error)> RunAsync(string[] arguments, IReadOnlyDictionary<string, string> environment, string? input = null)
    {
        using var process = Start(arguments, environment, withInput: input is not null);
        if (input is not null)
        {
            await process.StandardInput.WriteAsync(input);
            process.StandardInput.Close();
        }
        var output = process.StandardOutput.ReadToEndAsync();
        var error = process.StandardError.ReadToEndAsync();
        using var timeout = new CancellationTokenSource(TimeSpan.FromSeconds(90));
        try
        {
            await process.WaitForExitAsync(timeout.Token);
        }
        catch (OperationCanceledException)
        {
            // A verb that did not stop (serve, when a test expected a refusal) is not left running, holding its port.
            process.Kill(entireProcessTree: true);
            throw;
        }
        return (process.ExitCode, await output, await error);
    }
}
