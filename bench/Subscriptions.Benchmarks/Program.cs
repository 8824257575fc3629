using System.Globalization;
using Subscriptions.Benchmarks;

// dotnet run -c Release --project bench/Subscriptions.Benchmarks -- matching [--subscribers N] [--runs R]
// dotnet run -c Release --project bench/Subscriptions.Benchmarks -- daily [--subscribers N] [--runs R] [--connections C] [--no-dkim] [--no-warm-up] [--progress] [--statements]
// dotnet run -c Release --project bench/Subscriptions.Benchmarks -- message [--messages M] [--threads T]
// dotnet run -c Release --project bench/Subscriptions.Benchmarks -- signup [--seconds S]
// dotnet run -c Release --project bench/Subscriptions.Benchmarks -- slots [--subscribers N]
// dotnet run -c Release --project bench/Subscriptions.Benchmarks -- meaning [--subscribers N] [--runs R] [--signups S]
var mode = args.FirstOrDefault(a => !a.StartsWith('-')) ?? "";
var subscribers = IntOption("--subscribers", 100_000);
var runs = IntOption("--runs", 3);
Console.WriteLine($"Machine: {CpuModel()}, {Environment.ProcessorCount} cores, {Environment.OSVersion}, .NET {Environment.Version}, " +
    $"{(System.Runtime.GCSettings.IsServerGC ? "server" : "workstation")} GC, {DateTime.UtcNow:yyyy-MM-dd HH:mm} UTC");
Console.WriteLine($"Commit: {Commit()}");
// Sized as a production database would be for a million subscribers: the day's deliveries fit in its buffers.
// The signup burst meets PostgreSQL's default connection limit, as a server an operator did not tune has.
var connectionLimit = mode == "signup" ? " -c max_connections=100" : "";
// --statements: the daily benchmark lists the statements that took PostgreSQL longest in each run (pg_stat_statements,
// which costs a little itself).
var statements = args.Contains("--statements");
var statementStatistics = statements ? " -c shared_preload_libraries=pg_stat_statements" : "";
Subscriptions.Tests.Infrastructure.PostgresServer.ExtraSettings = "-c shared_buffers=1GB -c max_wal_size=4GB" + connectionLimit + statementStatistics;
Console.WriteLine("PostgreSQL 15 with fsync off, shared_buffers=1GB, max_wal_size=4GB" + (connectionLimit + statementStatistics).Replace(" -c ", ", ", StringComparison.Ordinal));
switch (mode)
{
    case "matching":
        await MatchingBenchmark.RunAsync(subscribers, runs);
        return 0;
    case "daily":
        await DailyBenchmark.RunAsync(subscribers, runs, IntOption("--connections", 4), statements, signed: !args.Contains("--no-dkim"),
            warmUp: !args.Contains("--no-warm-up"), progress: args.Contains("--progress"));
        return 0;
    case "signup":
        await SignupBenchmark.RunAsync(IntOption("--seconds", 20));
        return 0;
    case "slots":
        await SlotsBenchmark.RunAsync(subscribers);
        return 0;
    case "meaning":
        await MeaningBenchmark.RunAsync(subscribers, runs, IntOption("--signups", 200));
        return 0;
    case "message":
        await MessageBenchmark.RunAsync(IntOption("--messages", 20_000), IntOption("--threads", 8));
        return 0;
    default:
        Console.Error.WriteLine("Usage: Subscriptions.Benchmarks matching|daily|message|signup|slots|meaning [--subscribers N] [--runs R] [--connections C] [--no-dkim] [--no-warm-up] [--progress] [--statements] [--messages M] [--threads T] [--seconds S] [--signups S]");
        return 64;
}

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

int IntOption(string name, int fallback)
{
    var index = Array.IndexOf(args, name);
    return index >= 0 && index + 1 < args.Length ? int.Parse(args[index + 1], CultureInfo.InvariantCulture) : fallback;
}
