using System.Globalization;
using Subscriptions.Benchmarks;

// dotnet run -c Release --project bench/Subscriptions.Benchmarks -- matching [--subscribers N] [--runs R]
// dotnet run -c Release --project bench/Subscriptions.Benchmarks -- daily [--subscribers N] [--runs R] [--connections C]
// dotnet run -c Release --project bench/Subscriptions.Benchmarks -- message [--messages M]
// dotnet run -c Release --project bench/Subscriptions.Benchmarks -- meaning [--subscribers N] [--runs R] [--signups S]
var mode = args.FirstOrDefault(a => !a.StartsWith('-')) ?? "";
var subscribers = IntOption("--subscribers", 100_000);
var runs = IntOption("--runs", 3);
Console.WriteLine($"Machine: {Environment.ProcessorCount} cores, .NET {Environment.Version}, {DateTime.UtcNow:yyyy-MM-dd HH:mm} UTC");
// Sized as a production database would be for a million subscribers: the day's deliveries fit in its buffers.
Subscriptions.Tests.Infrastructure.PostgresServer.ExtraSettings = "-c shared_buffers=1GB -c max_wal_size=4GB";
Console.WriteLine("PostgreSQL 15 with fsync off, shared_buffers=1GB, max_wal_size=4GB");
switch (mode)
{
    case "matching":
        await MatchingBenchmark.RunAsync(subscribers, runs);
        return 0;
    case "daily":
        await DailyBenchmark.RunAsync(subscribers, runs, IntOption("--connections", 4));
        return 0;
    case "meaning":
        await MeaningBenchmark.RunAsync(subscribers, runs, IntOption("--signups", 200));
        return 0;
    case "message":
        await MessageBenchmark.RunAsync(IntOption("--messages", 20_000));
        return 0;
    default:
        Console.Error.WriteLine("Usage: Subscriptions.Benchmarks matching|daily|message|meaning [--subscribers N] [--runs R] [--connections C] [--messages M] [--signups S]");
        return 64;
}

int IntOption(string name, int fallback)
{
    var index = Array.IndexOf(args, name);
    return index >= 0 && index + 1 < args.Length ? int.Parse(args[index + 1], CultureInfo.InvariantCulture) : fallback;
}
