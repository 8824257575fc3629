using Microsoft.Extensions.Options;
using Subscriptions.Configuration;
using Subscriptions.Database;
using Subscriptions.Digest;
using Subscriptions.Email;
using Subscriptions.Matching;
using Subscriptions.Papers;
using Subscriptions.Subscribers;

// `dotnet run -- VERB [options]`; with no verb, serve.
var verb = args.Length > 0 && (!args[0].StartsWith('-') || args[0] is "--help" or "-h") ? args[0] : "serve";
var options = verb == "serve" && (args.Length == 0 || args[0].StartsWith('-')) ? args : args[1..];

try
{
    return verb switch
    {
        "serve" => await ServeAsync(options),
        "migrate" => await MigrateAsync(options),
        "ingest" => await IngestAsync(options),
        "digest" => await DigestAsync(options),
        "help" or "--help" or "-h" => Usage(Console.Out, 0),
        _ => Usage(Console.Error, 64),
    };
}
catch (Exception e) when (ConfigurationFailures(e) is { Count: > 0 } failures)
{
    Console.Error.WriteLine("Configuration error:");
    foreach (var failure in failures)
    {
        Console.Error.WriteLine($"  {failure}");
    }
    return 78;
}

static async Task<int> ServeAsync(string[] args)
{
    var builder = WebApplication.CreateBuilder(args);
    if (string.IsNullOrEmpty(builder.Configuration["urls"]) && string.IsNullOrEmpty(builder.Configuration["http_ports"]))
    {
        builder.WebHost.UseUrls("http://localhost:8080");
    }

    // Configure the database; migrations run before anything else starts
    builder.Services.AddDatabase().AddMigrationsAtStartup();

    // Configure email: one sender (SMTP or pickup folder) and the outbox of confirmation emails
    builder.Services.AddMailSending().AddEmailOutbox();

    // Configure the subscriber lifecycle: signup, confirm, unsubscribe
    builder.Services.AddSubscribers();

    // Configure papers: the sources of each day's list, and what is stored of it
    builder.Services.AddPapers();

    // Configure matching: topics against a day's papers, and the preview of what an email would hold
    builder.Services.AddMatching();

    // Configure the daily digest: the clustered Quartz trigger, and this instance's delivery senders
    builder.Services.AddDigest().AddDigestService(builder.Configuration);

    builder.Services.AddProblemDetails();

    var app = builder.Build();

    app.UseExceptionHandler();
    app.UseStatusCodePages();
    app.UseRateLimiter();

    app.MapSubscribers();
    app.MapPapers();
    app.MapMatching();
    app.MapHealth();

    // Every bad setting at once, before anything starts.
    app.Services.GetRequiredService<IStartupValidator>().Validate();
    await app.RunAsync();
    return 0;
}

// The verbs other than serve: a host without the web, its settings checked, the schema brought up to date.
static async Task<CommandHost> StartCommandAsync(string[] args, Action<IServiceCollection> addServices)
{
    var builder = Host.CreateApplicationBuilder(new HostApplicationBuilderSettings { Args = args, ContentRootPath = AppContext.BaseDirectory });
    addServices(builder.Services);
    var host = builder.Build();
    host.Services.GetRequiredService<IStartupValidator>().Validate();
    var applied = await host.Services.GetRequiredService<MigrationRunner>().ApplyPendingAsync(CancellationToken.None);
    return new CommandHost(host, applied);
}

static async Task<int> MigrateAsync(string[] args)
{
    using var command = await StartCommandAsync(args, services => services.AddDatabase());
    Console.WriteLine(command.Applied.Count == 0
        ? "The database schema is current; nothing to apply."
        : $"Applied {command.Applied.Count} migration(s): {string.Join(", ", command.Applied)}");
    return 0;
}

static async Task<int> IngestAsync(string[] args)
{
    if (IngestArguments.Parse(args) is not { } command)
    {
        return Usage(Console.Error, 64);
    }
    using var host = await StartCommandAsync(command.Rest, services => services.AddDatabase().AddPapers());
    var day = command.Day ?? DateOnly.FromDateTime(DateTime.UtcNow);
    Console.WriteLine($"Ingesting the papers of {day:yyyy-MM-dd}");
    var reports = await host.Services.GetRequiredService<PaperIngest>().IngestAsync(day, command.Sources, command.File, CancellationToken.None);
    foreach (var report in reports)
    {
        Console.WriteLine(report);
        foreach (var reason in report.Skipped)
        {
            Console.WriteLine($"    skipped {reason}");
        }
    }
    return reports.Any(report => report.Failed) ? 1 : 0;
}

static async Task<int> DigestAsync(string[] args)
{
    if (DigestArguments.Parse(args) is not { } command)
    {
        return Usage(Console.Error, 64);
    }
    using var host = await StartCommandAsync(command.Rest, services => services.AddDigestPipeline());

    using var stop = new CancellationTokenSource();
    Console.CancelKeyPress += (_, e) =>
    {
        e.Cancel = true;
        Console.WriteLine("Stopping after the messages in flight; run digest again to finish the day.");
        stop.Cancel();
    };
    var day = command.Day ?? DigestScheduling.DayOfFiring(
        host.Services.GetRequiredService<IOptions<DigestOptions>>().Value, DateTimeOffset.UtcNow);
    Console.WriteLine($"Digest of {day:yyyy-MM-dd}{(command.DryRun ? " (dry run)" : "")}");
    try
    {
        var summary = await host.Services.GetRequiredService<DigestRunner>().RunAsync(
            day, !command.NoIngest, command.DryRun, Console.WriteLine, stop.Token);
        Console.WriteLine($"Done in {summary.Elapsed.TotalSeconds:F1} s: {summary.Matched:N0} subscribers matched, {summary.Planned:N0} newly planned, " +
            $"{summary.Sent:N0} sent, {summary.Failed:N0} failed, {summary.Skipped:N0} skipped, {summary.Waiting:N0} still open");
        return summary.Sources.Any(source => source.Failed) ? 1 : 0;
    }
    catch (OperationCanceledException) when (stop.IsCancellationRequested)
    {
        return 130;
    }
}

static List<string> ConfigurationFailures(Exception exception) => exception switch
{
    OptionsValidationException e => [.. e.Failures],
    AggregateException e => [.. e.InnerExceptions.SelectMany(ConfigurationFailures)],
    _ => [],
};

static int Usage(TextWriter writer, int exitCode)
{
    writer.WriteLine("""
        Usage: Subscriptions [VERB] [--Key=Value ...]

          serve     serve the web endpoints and send queued emails (the default)
          migrate   apply pending sql/ migrations and exit
          ingest [--date YYYY-MM-DD] [--source huggingface|arxiv|file]... [--file PATH]
                    fetch and store one day's papers (default: today, UTC, from Papers:Sources)
          digest [--date YYYY-MM-DD] [--dry-run] [--no-ingest]
                    run one day's whole digest now: ingest, match, plan, send, with progress

        Settings come from appsettings.json, environment variables (Smtp__Host=...) or --Smtp:Host=...;
        see the README for every key.
        """);
    return exitCode;
}

/// <summary>A verb's host, and the migrations it applied on the way up.</summary>
internal sealed record CommandHost(IHost Host, IReadOnlyList<string> Applied) : IDisposable
{
    public IServiceProvider Services => Host.Services;

    public void Dispose() => Host.Dispose();
}

/// <summary>The entry point, named so tests can host the app with <c>WebApplicationFactory&lt;Program&gt;</c>.</summary>
public partial class Program;
