using System.CommandLine;
using System.Globalization;
using Subscriptions.Benchmarks;

// dotnet run -c Release --project bench/Subscriptions.Benchmarks -- BENCHMARK [options]; --help lists the benchmarks, and
// BENCHMARK --help the options of one. An option misspelt or a number that is not one stops it before anything starts:
// a benchmark of many minutes that ran its defaults instead (as `daily --help` once did) measured what nobody asked for.
var subscribers = CountOption("--subscribers", "How many subscribers the database holds.", 100_000);
var runs = CountOption("--runs", "How many measured runs.", 3);
var connections = CountOption("--connections", "SMTP connections to the relay (Smtp:Connections).", 4);
var noDkim = new Option<bool>("--no-dkim") { Description = "Measure with DKIM off only (not also RSA-2048 and Ed25519)." };
var noWarmUp = new Option<bool>("--no-warm-up") { Description = "No warm-up run first: run 1 is what a fresh process gets." };
var progress = new Option<bool>("--progress") { Description = "Print the emails sent each second." };
var statements = new Option<bool>("--statements")
{
    Description = "List the statements that took PostgreSQL longest in each run (pg_stat_statements, which costs a little itself).",
};
var messages = CountOption("--messages", "How many digests to render (each step, on one thread).", 20_000);
var threads = CountOption("--threads", "How many threads render at once, after the one-thread steps (1: none).", 8);
var seconds = CountOption("--seconds", "How long each burst lasts.", 20);
var historyDays = CountOption("--history-days",
    "Days of digests sent before, for everyone, with a paper of the day that trended on the first of them (0: none).", 0, minimum: 0, maximum: 3650);
var signups = CountOption("--signups", "How many signups that embed new topics to time.", 200);

var root = new RootCommand("The service's benchmarks, each against a throwaway PostgreSQL cluster of its own (see the README's benchmark sections).")
{
    Benchmark("matching", "Compute every subscriber's capped list of a day's papers; peak memory.", [subscribers, runs],
        result => MatchingBenchmark.RunAsync(result.GetValue(subscribers), result.GetValue(runs))),
    Benchmark("daily", "The whole daily run, match to last outcome recorded, sending to Postfix's smtp-sink; smtp-source's rate beside it.",
        [subscribers, runs, connections, noDkim, noWarmUp, progress, statements],
        result => DailyBenchmark.RunAsync(result.GetValue(subscribers), result.GetValue(runs), result.GetValue(connections), result.GetValue(statements),
            signed: !result.GetValue(noDkim), warmUp: !result.GetValue(noWarmUp), progress: result.GetValue(progress)),
        statisticsOf: statements),
    Benchmark("message", "What one email costs: rendering, writing and DKIM-signing a digest, step by step, without database or network.", [messages, threads],
        result => MessageBenchmark.RunAsync(result.GetValue(messages), result.GetValue(threads))),
    // The signup burst meets PostgreSQL's default connection limit, as a server an operator did not tune has.
    Benchmark("signup", "Signups under a burst (wrk), at 20 and 200 connections, with GET / beside them.", [seconds],
        result => SignupBenchmark.RunAsync(result.GetValue(seconds)), extraSettings: " -c max_connections=100"),
    Benchmark("slots", "A day of 24 hourly slots planned, against one slot for everyone (what the single daily run planned).", [subscribers, historyDays],
        result => SlotsBenchmark.RunAsync(result.GetValue(subscribers), result.GetValue(historyDays))),
    Benchmark("meaning", "Matching with meaning off and on, embedding 500 papers, and signups that embed new topics; peak memory of each.", [subscribers, runs, signups],
        result => MeaningBenchmark.RunAsync(result.GetValue(subscribers), result.GetValue(runs), result.GetValue(signups))),
};
var parsed = root.Parse(args);
if (parsed.Errors.Count > 0)
{
    foreach (var error in parsed.Errors)
    {
        Console.Error.WriteLine(error.Message);
    }
    Console.Error.WriteLine();
    var command = parsed.CommandResult.Command;
    root.Parse(command == root ? ["--help"] : [command.Name, "--help"]).Invoke(new InvocationConfiguration { Output = Console.Error });
    return 64; // sysexits.h: EX_USAGE
}
return await parsed.InvokeAsync(new InvocationConfiguration { EnableDefaultExceptionHandler = false });

static Option<int> CountOption(string name, string description, int fallback, int minimum = 1, int maximum = int.MaxValue) => new(name)
{
    Description = description,
    HelpName = "N",
    DefaultValueFactory = _ => fallback,
    CustomParser = result =>
    {
        var text = result.Tokens.Count == 1 ? result.Tokens[0].Value : "";
        if (int.TryParse(text, NumberStyles.None, CultureInfo.InvariantCulture, out var count) && count >= minimum && count <= maximum)
        {
            return count;
        }
        result.AddError(maximum == int.MaxValue
            ? $"{name} {text}: expected a whole number, at least {minimum}"
            : $"{name} {text}: expected a whole number, {minimum} to {maximum}");
        return fallback;
    },
};

// The machine, the commit and the database's settings go first in every benchmark's output, so that its figures can be read
// against them.
static Command Benchmark(string name, string description, Option[] options, Func<ParseResult, Task> run, string extraSettings = "",
    Option<bool>? statisticsOf = null)
{
    var command = new Command(name, description);
    foreach (var option in options)
    {
        command.Add(option);
    }
    command.SetAction(async result =>
    {
        Console.WriteLine($"Machine: {CpuModel()}, {Environment.ProcessorCount} cores, {Environment.OSVersion}, .NET {Environment.Version}, " +
            $"{(System.Runtime.GCSettings.IsServerGC ? "server" : "workstation")} GC, {DateTime.UtcNow:yyyy-MM-dd HH:mm} UTC");
        Console.WriteLine($"Commit: {Commit()}");
        Console.WriteLine(FirstGeneration());
        var settings = extraSettings + (statisticsOf is not null && result.GetValue(statisticsOf) ? " -c shared_preload_libraries=pg_stat_statements" : "");
        // Sized as a production database would be for a million subscribers: the day's deliveries fit in its buffers.
        Subscriptions.Tests.Infrastructure.PostgresServer.ExtraSettings = "-c shared_buffers=1GB -c max_wal_size=4GB" + settings;
        Console.WriteLine("PostgreSQL 15 with fsync off, shared_buffers=1GB, max_wal_size=4GB" + settings.Replace(" -c ", ", ", StringComparison.Ordinal));
        await run(result);
        return 0;
    });
    return command;
}

// deploy/ runs the service with a fixed first generation (DOTNET_GCgen0size), which only the environment can set: `dotnet run`
// sets it for the benchmarks too (Properties/launchSettings.json); the built binary run directly gets the runtime's own.
static string FirstGeneration() =>
    Environment.GetEnvironmentVariable("DOTNET_GCgen0size") is { Length: > 0 } size
        ? $"GC first generation: DOTNET_GCgen0size={size}, as deploy/ runs the service"
        : "GC first generation: the runtime's own, from the cache size the host reports (DOTNET_GCgen0size not set; deploy/ sets it)";

static string CpuModel() =>
    File.Exists("/proc/cpuinfo")
        ? File.ReadLines("/proc/cpuinfo").FirstOrDefault(line => line.StartsWith("model name", StringComparison.Ordinal))?.Split(':', 2)[1].Trim() ?? "unknown CPU"
        : "unknown CPU";

// The commit measured, and whether the tree had changes on top of it: that of the checkout the benchmark was built in
// (asked from its output folder), whatever folder it is run from.
static string Commit()
{
    try
    {
        var start = new System.Diagnostics.ProcessStartInfo("git", "describe --always --dirty --abbrev=12")
        {
            RedirectStandardOutput = true,
            RedirectStandardError = true,
            WorkingDirectory = AppContext.BaseDirectory,
        };
        using var git = System.Diagnostics.Process.Start(start)!;
        var output = git.StandardOutput.ReadToEnd().Trim();
        git.WaitForExit();
        return git.ExitCode == 0 ? output : "unknown (not a git checkout)";
    }
    catch (System.ComponentModel.Win32Exception)
    {
        return "unknown (git not installed)";
    }
}
