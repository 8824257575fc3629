using System.Diagnostics;
using System.Globalization;

namespace Subscriptions.Benchmarks;

/// <summary>
/// Where the CPU of a phase went, read from Linux's /proc: this process, the PostgreSQL cluster (the postmaster, its
/// live children and the children it has reaped) and smtp-sink, against what the whole machine spent. This is the
/// profile of a send: which process to look at first.
/// </summary>
internal sealed class CpuAccount
{
    private const double TicksPerSecond = 100; // USER_HZ, 100 on every Linux build .NET supports

    private readonly int _postmaster;
    private readonly int _sink;

    private CpuAccount(int postmaster, int sink)
    {
        _postmaster = postmaster;
        _sink = sink;
    }

    /// <summary>Follows the cluster whose data directory <paramref name="dataDirectory"/> is, and the smtp-sink process.</summary>
    public static CpuAccount For(string dataDirectory, Process sink) =>
        new(int.Parse(File.ReadLines(Path.Combine(dataDirectory, "postmaster.pid")).First(), CultureInfo.InvariantCulture), sink.Id);

    public Snapshot Take()
    {
        double cluster = 0;
        foreach (var directory in Directory.EnumerateDirectories("/proc"))
        {
            if (int.TryParse(Path.GetFileName(directory), out var pid) && Stat(pid) is { } stat && stat.ParentId == _postmaster)
            {
                cluster += stat.Own;
            }
        }
        cluster += Stat(_postmaster) is { } postmaster ? postmaster.Own + postmaster.Reaped : 0;
        using var self = Process.GetCurrentProcess();
        return new Snapshot(self.TotalProcessorTime.TotalSeconds, cluster, Stat(_sink)?.Own ?? 0, MachineBusySeconds());
    }

    /// <summary>CPU seconds used so far: by this process, the cluster, smtp-sink, and every process of the machine together.</summary>
    public sealed record Snapshot(double Service, double Database, double Sink, double Machine)
    {
        public Snapshot Since(Snapshot start) =>
            new(Service - start.Service, Database - start.Database, Sink - start.Sink, Machine - start.Machine);

        /// <summary>Per message, in microseconds: the three, and the rest of the machine (other work sharing the cores).</summary>
        public string PerMessage(long messages)
        {
            string Micro(double seconds) => (seconds / Math.Max(messages, 1) * 1e6).ToString("N0", CultureInfo.InvariantCulture);
            return $"CPU per email: service {Micro(Service)} µs, PostgreSQL {Micro(Database)} µs, smtp-sink {Micro(Sink)} µs, " +
                $"the rest of the machine {Micro(Machine - Service - Database - Sink)} µs";
        }

        /// <summary>In CPU seconds, against what the machine's cores could have given over <paramref name="wallSeconds"/>.</summary>
        public string Of(double wallSeconds) => string.Create(CultureInfo.InvariantCulture,
            $"CPU service {Service:F2} s, PostgreSQL {Database:F2} s, the whole machine {Machine:F2} s of {wallSeconds * Environment.ProcessorCount:F2} s " +
            $"({Environment.ProcessorCount} cores × {wallSeconds:F2} s)");
    }

    private sealed record ProcessStat(int ParentId, double Own, double Reaped);

    private static ProcessStat? Stat(int pid)
    {
        string line;
        try
        {
            line = File.ReadAllText($"/proc/{pid}/stat");
        }
        catch (IOException)
        {
            return null; // gone since the directory was listed
        }
        // pid (comm) state ppid … utime(14) stime(15) cutime(16) cstime(17): the name may hold spaces, so split after ')'.
        var fields = line[(line.LastIndexOf(')') + 2)..].Split(' ');
        double Field(int number) => double.Parse(fields[number - 3], CultureInfo.InvariantCulture) / TicksPerSecond;
        return new ProcessStat(int.Parse(fields[1], CultureInfo.InvariantCulture), Field(14) + Field(15), Field(16) + Field(17));
    }

    private static double MachineBusySeconds()
    {
        // cpu user nice system idle iowait irq softirq steal …: busy is everything but idle and iowait.
        var fields = File.ReadLines("/proc/stat").First().Split(' ', StringSplitOptions.RemoveEmptyEntries).Skip(1)
            .Select(value => double.Parse(value, CultureInfo.InvariantCulture)).ToArray();
        return (fields.Take(8).Sum() - fields[3] - fields[4]) / TicksPerSecond;
    }
}
