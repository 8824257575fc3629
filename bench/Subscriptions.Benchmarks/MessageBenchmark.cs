using System.Diagnostics;
using System.Globalization;
using System.Security.Cryptography;
using Microsoft.Extensions.Configuration;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Logging;
using MimeKit;
using Subscriptions.Digest;
using Subscriptions.Email;
using Subscriptions.Papers;

namespace Subscriptions.Benchmarks;

/// <summary>
/// The CPU (and memory allocated) one email costs this process, step by step, on one thread and without a network: render the digest,
/// DKIM-sign it, and write it as MailKit does on the wire. It tells the cost of DKIM apart from everything the
/// daily run also does (database, SMTP, the sink's own work on the same cores). Then the same steps on
/// <c>threads</c> threads at once, as the daily run's senders (two per SMTP connection) render and sign side by side.
/// </summary>
internal static partial class MessageBenchmark
{
    private const int ClockThreadCpuTime = 3; // CLOCK_THREAD_CPUTIME_ID: time this thread ran, whatever else the machine does

    [System.Runtime.InteropServices.LibraryImport("libc", EntryPoint = "clock_gettime")]
    private static partial int ClockGetTime(int clock, out TimeSpec time);

    private readonly record struct TimeSpec(long Seconds, long Nanoseconds);

    private static TimeSpan ThreadCpu() =>
        ClockGetTime(ClockThreadCpuTime, out var time) == 0 ? TimeSpan.FromTicks(time.Seconds * TimeSpan.TicksPerSecond + time.Nanoseconds / 100) : TimeSpan.Zero;

    public static async Task RunAsync(int messages, int threads)
    {
        var connectionString = await BenchData.CreateAsync(subscribers: 0);
        var keyDirectory = Directory.CreateTempSubdirectory("subscriptions-bench-dkim-");
        var keyPath = Path.Combine(keyDirectory.FullName, "dkim.pem");
        using (var key = RSA.Create(2048))
        {
            await File.WriteAllTextAsync(keyPath, key.ExportRSAPrivateKeyPem());
        }
        var builder = Host.CreateApplicationBuilder(new HostApplicationBuilderSettings { DisableDefaults = true });
        builder.Configuration.AddInMemoryCollection(new Dictionary<string, string?>
        {
            ["ConnectionStrings:Postgres"] = connectionString,
            ["App:BaseUrl"] = "https://papers.bench.example",
            ["App:TokenSecret"] = "a-secret-used-only-by-the-benchmark-run",
            ["Mail:From"] = "Trending Papers <papers@bench.example>",
            ["Mail:BounceAddress"] = "bounces@bench.example",
            ["Dkim:Domain"] = "bench.example",
            ["Dkim:Selector"] = "bench",
            ["Dkim:PrivateKeyPath"] = keyPath,
        });
        builder.Logging.AddConsole().SetMinimumLevel(LogLevel.Warning);
        builder.Services.AddDigest();
        using var host = builder.Build();
        var emails = host.Services.GetRequiredService<DigestEmails>();
        var signer = host.Services.GetRequiredService<DkimMessageSigner>();
        var ed25519Path = Path.Combine(keyDirectory.FullName, "ed25519.pem");
        using var ed25519Key = DkimKey.CreateEd25519();
        await File.WriteAllTextAsync(ed25519Path, ed25519Key.ExportPem());
        var ed25519Signer = new DkimMessageSigner(
            Microsoft.Extensions.Options.Options.Create(new DkimOptions { Domain = "bench.example", Selector = "bench", PrivateKeyPath = ed25519Path }), TimeProvider.System);
        var papers = (await host.Services.GetRequiredService<PaperStore>().PapersOfDayAsync(BenchData.Day, CancellationToken.None)).ToDictionary(p => p.Id);
        var ids = papers.Keys.Order().ToArray();
        var subscriptionKey = RandomNumberGenerator.GetBytes(16);

        MimeMessage Render(int i) => emails.Render(i, $"reader{i}@bench.example", i, subscriptionKey, BenchData.Day,
            [.. Enumerable.Range(0, 10).Select(k => new PlannedPaper(ids[(i * 7 + k * 13) % ids.Length], [Vocabulary.Topics[(i + k) % Vocabulary.Topics.Length].Trim('"')]))],
            papers);
        // As MailKit's SmtpClient writes a message (its transports' default options, prepared for sending): CRLF line ends, and
        // not international even where the server offers SMTPUTF8 (smtp-sink does), so that headers go as they were formatted
        // when set, not formatted again for UTF-8.
        var wire = FormatOptions.Default.Clone();
        wire.NewLineFormat = NewLineFormat.Dos;
        wire.EnsureNewLine = true;

        using var rsa = RSA.Create();
        rsa.ImportFromPem(await File.ReadAllTextAsync(keyPath));
        var headers = RandomNumberGenerator.GetBytes(600);
        var ed25519 = new Org.BouncyCastle.Crypto.Parameters.Ed25519PrivateKeyParameters(RandomNumberGenerator.GetBytes(32));
        var body = RandomNumberGenerator.GetBytes(16 * 1024);
        long size = 0;
        var steps = new (string Name, Action<int> Step)[]
        {
            ("render", i => Render(i).Dispose()),
            ("render + write", i =>
            {
                using var measure = new MimeKit.IO.MeasuringStream();
                using var message = Render(i);
                message.WriteTo(wire, measure);
                Interlocked.Add(ref size, measure.Length);
            }),
            // As MailKit sends a digest (with DATA: it uses BDAT only for binary content, CHUNKING or not): prepared for
            // 8BITMIME, and written through its dot-stuffing filter, which reads every byte of the message.
            ("render + prepare + write as MailKit's DATA", i =>
            {
                using var message = Render(i);
                message.Prepare(EncodingConstraint.EightBit, TransferEncodings.SmtpMaxLineLength);
                using var filtered = new MimeKit.IO.FilteredStream(Stream.Null);
                filtered.Add(new MailKit.Net.Smtp.SmtpDataFilter());
                message.WriteTo(wire, filtered);
            }),
            ("render + DKIM sign (RSA-2048) + write", i =>
            {
                using var message = Render(i);
                signer.Sign(message);
                message.WriteTo(wire, Stream.Null);
            }),
            ("render + DKIM sign (Ed25519) + write", i =>
            {
                using var message = Render(i);
                ed25519Signer.Sign(message);
                message.WriteTo(wire, Stream.Null);
            }),
            // The parts of DKIM's cost: the signature over the canonical headers (Ed25519 ours, libsodium's, and BouncyCastle's,
            // which MimeKit brings), and the body hash, made with the platform's SHA-256 (the CPU's SHA instructions);
            // BouncyCastle's managed one, which MimeKit's signer uses, beside it.
            ("  RSA-2048 signature of 600 bytes", _ => rsa.SignData(headers, HashAlgorithmName.SHA256, RSASignaturePadding.Pkcs1)),
            ("  Ed25519 signature of 600 bytes, libsodium", _ => ed25519Key.Sign(headers)),
            ("  Ed25519 signature of 600 bytes, BouncyCastle", _ =>
            {
                var signer = new Org.BouncyCastle.Crypto.Signers.Ed25519Signer();
                signer.Init(true, ed25519);
                signer.BlockUpdate(headers, 0, headers.Length);
                signer.GenerateSignature();
            }),
            ("  SHA-256 of 16 KB, BouncyCastle", _ =>
            {
                var digest = new Org.BouncyCastle.Crypto.Digests.Sha256Digest();
                digest.BlockUpdate(body, 0, body.Length);
                digest.DoFinal(new byte[32], 0);
            }),
            ("  SHA-256 of 16 KB, platform", _ => SHA256.HashData(body)),
        };
        Console.WriteLine($"Per-message CPU, one thread, {messages:N0} digests of 10 papers each, after {messages / 10:N0} warm-up messages of each step:");
        // Every step once before any is measured, so that all of them run tier-1 code.
        foreach (var (_, step) in steps)
        {
            for (var i = 0; i < messages / 10; i++)
            {
                step(i);
            }
        }
        foreach (var (name, step) in steps)
        {
            GC.Collect();
            var processCpu = Process.GetCurrentProcess().TotalProcessorTime;
            var threadCpu = ThreadCpu();
            var allocated = GC.GetAllocatedBytesForCurrentThread();
            var wall = Stopwatch.StartNew();
            for (var i = 0; i < messages; i++)
            {
                step(i);
            }
            var process = (Process.GetCurrentProcess().TotalProcessorTime - processCpu).TotalMicroseconds / messages;
            var thread = (ThreadCpu() - threadCpu).TotalMicroseconds / messages;
            var kilobytes = (GC.GetAllocatedBytesForCurrentThread() - allocated) / 1024.0 / messages;
            Console.WriteLine(string.Create(CultureInfo.InvariantCulture,
                $"  {name,-45} {thread,6:F0} µs CPU on its thread, {process,6:F0} µs CPU in the process (with the GC), {wall.Elapsed.TotalMicroseconds / messages,6:F0} µs wall, {kilobytes,6:F1} KB allocated"));
        }
        Console.WriteLine(string.Create(CultureInfo.InvariantCulture, $"Mean size on the wire, unsigned: {size / (messages + messages / 10) / 1024.0:F1} KB"));

        if (threads > 1)
        {
            Console.WriteLine($"The same, {threads} threads at once on {Environment.ProcessorCount} cores (CPU of the whole process, per message):");
            foreach (var (name, step) in steps.Take(6))
            {
                GC.Collect();
                var processCpu = Process.GetCurrentProcess().TotalProcessorTime;
                var wall = Stopwatch.StartNew();
                var next = -1;
                var workers = Enumerable.Range(0, threads).Select(_ => Task.Run(() =>
                {
                    for (var i = Interlocked.Increment(ref next); i < messages; i = Interlocked.Increment(ref next))
                    {
                        step(i);
                    }
                })).ToArray();
                await Task.WhenAll(workers);
                var process = (Process.GetCurrentProcess().TotalProcessorTime - processCpu).TotalMicroseconds / messages;
                Console.WriteLine(string.Create(CultureInfo.InvariantCulture,
                    $"  {name,-45} {process,6:F0} µs CPU in the process, {wall.Elapsed.TotalMicroseconds / messages,6:F0} µs wall"));
            }
        }
        keyDirectory.Delete(recursive: true);
    }
}
