using Microsoft.Extensions.Options;
using Subscriptions.Bounces;
using Subscriptions.CommandLine;
using Subscriptions.Database;
using Subscriptions.Digest;
using Subscriptions.Email;
using Subscriptions.Health;
using Subscriptions.Infrastructure;
using Subscriptions.Matching;
using Subscriptions.Observability;
using Subscriptions.Operators;
using Subscriptions.Papers;
using Subscriptions.Subscribers;
using Subscriptions.Web;

// `Subscriptions [VERB] [options] [--Key=Value ...]`: the verbs are in CommandLine/, serve is below.
return await Verbs.RunAsync(args, ServeAsync);

static async Task<int> ServeAsync(string[] settings)
{
    // Configure metrics (Prometheus scrape at /metrics) and traces (OTLP, when OTEL_EXPORTER_OTLP_ENDPOINT is set)
    var builder = WebApplication.CreateBuilder(new WebApplicationOptions { Args = settings, ContentRootPath = ContentRoot.Default(settings) })
        .WithDefaultUrl().AddObservability();

    // Configure the database (migrated below, before anything starts)
    builder.Services.AddDatabase().AddHealth().AddShutdownTimeout();

    // Configure email (one sender, SMTP or the pickup folder), papers (each day's list) and matching (topics against them)
    builder.Services.AddEmail().AddPapers().AddMatching();

    // Configure the subscriber lifecycle: signup, confirm, preferences, unsubscribe, and their emails; and what is deleted once old
    builder.Services.AddSubscribers().AddRetention();

    // Configure the daily digest (the clustered Quartz trigger, this instance's delivery senders) and bounces (the mailbox reader)
    builder.Services.AddDigestBackground(builder.Configuration).AddBounces(builder.Configuration);

    // Configure the operator console (/admin): sign-in, dashboard, run controls, subscriber lookup
    builder.Services.AddOperatorConsole();

    // Configure what every request gets: body limits, problem answers, rate-limit answers, security headers
    builder.Services.AddWeb();

    var app = builder.Build();

    // Every bad setting at once, before anything starts (or reads one of them to set up a route).
    app.Services.GetRequiredService<IStartupValidator>().Validate();
    var applied = await app.Services.MigrateAsync();
    app.Logger.LogInformation("Database schema is current ({Applied} migration(s) applied now)", applied.Count);

    app.UseMetricsPort().UseWeb().UseOperatorConsole();

    app.MapSubscribers().MapPreferences().MapPapers().MapMatching().MapHealth().MapBounces().MapObservability().MapOperatorConsole();
    await app.RunBoundedAsync();
    return Verbs.Done;
}

/// <summary>The entry point, named so tests can host the app with <c>WebApplicationFactory&lt;Program&gt;</c>.</summary>
public partial class Program;
