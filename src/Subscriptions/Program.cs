using Microsoft.Extensions.Options;
using Subscriptions.CommandLine;
using Subscriptions.Database;
using Subscriptions.Digest;
using Subscriptions.Email;
using Subscriptions.Health;
using Subscriptions.Matching;
using Subscriptions.Papers;
using Subscriptions.Subscribers;

// `Subscriptions [VERB] [options] [--Key=Value ...]`: the verbs are in CommandLine/, serve is below.
return await Verbs.RunAsync(args, ServeAsync);

static async Task<int> ServeAsync(string[] settings)
{
    var builder = WebApplication.CreateBuilder(settings);
    if (string.IsNullOrEmpty(builder.Configuration["urls"]) && string.IsNullOrEmpty(builder.Configuration["http_ports"]))
    {
        builder.WebHost.UseUrls("http://localhost:8080");
    }

    // Configure the database; migrations run before anything else starts
    builder.Services.AddDatabase().AddMigrationsAtStartup().AddHealth();

    // Configure email: one sender, SMTP or the pickup folder
    builder.Services.AddEmail();

    // Configure papers (the sources of each day's list) and matching (topics against them)
    builder.Services.AddPapers().AddMatching();

    // Configure the subscriber lifecycle: signup, confirm, preferences, unsubscribe, and their emails
    builder.Services.AddSubscribers();

    // Configure the daily digest: the clustered Quartz trigger, and this instance's delivery senders
    builder.Services.AddDigestBackground(builder.Configuration);

    builder.Services.AddProblemDetails();

    var app = builder.Build();

    app.UseExceptionHandler();
    app.UseStatusCodePages();
    app.UseForwardedHeaders();
    app.UseRateLimiter();

    app.MapSubscribers();
    app.MapPreferences();
    app.MapPapers();
    app.MapMatching();
    app.MapHealth();

    // Every bad setting at once, before anything starts.
    app.Services.GetRequiredService<IStartupValidator>().Validate();
    await app.RunAsync();
    return Verbs.Done;
}

/// <summary>The entry point, named so tests can host the app with <c>WebApplicationFactory&lt;Program&gt;</c>.</summary>
public partial class Program;
