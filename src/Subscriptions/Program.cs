using Microsoft.Extensions.Options;
using Subscriptions.Configuration;
using Subscriptions.Database;
using Subscriptions.Email;
using Subscriptions.Subscribers;

// `dotnet run -- VERB [options]`; with no verb, serve.
var verb = args.Length > 0 && !args[0].StartsWith('-') ? args[0] : "serve";
var options = verb == "serve" && (args.Length == 0 || args[0].StartsWith('-')) ? args : args[1..];

try
{
    return verb switch
    {
        "serve" => await ServeAsync(options),
        "migrate" => await MigrateAsync(options),
        "help" or "--help" => Usage(Console.Out, 0),
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

    // Settings of the daily run, validated now so a mistake shows at start rather than at 07:00
    builder.Services.AddSection<PapersOptions>(PapersOptions.Section);
    builder.Services.AddSection<DigestOptions>(DigestOptions.Section);

    builder.Services.AddProblemDetails();

    var app = builder.Build();

    app.UseExceptionHandler();
    app.UseStatusCodePages();
    app.UseRateLimiter();

    app.MapSubscribers();
    app.MapHealth();

    // Every bad setting at once, before anything starts.
    app.Services.GetRequiredService<IStartupValidator>().Validate();
    await app.RunAsync();
    return 0;
}

static async Task<int> MigrateAsync(string[] args)
{
    var builder = Host.CreateApplicationBuilder(args);
    builder.Services.AddDatabase();
    using var host = builder.Build();
    host.Services.GetRequiredService<IStartupValidator>().Validate();

    var applied = await host.Services.GetRequiredService<MigrationRunner>().ApplyPendingAsync(CancellationToken.None);
    Console.WriteLine(applied.Count == 0
        ? "The database schema is current; nothing to apply."
        : $"Applied {applied.Count} migration(s): {string.Join(", ", applied)}");
    return 0;
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

        Settings come from appsettings.json, environment variables (Smtp__Host=...) or --Smtp:Host=...;
        see the README for every key.
        """);
    return exitCode;
}

/// <summary>The entry point, named so tests can host the app with <c>WebApplicationFactory&lt;Program&gt;</c>.</summary>
public partial class Program;
