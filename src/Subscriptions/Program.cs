using Microsoft.Extensions.Options;
using Subscriptions.Bounces;
using Subscriptions.CommandLine;
using Subscriptions.Database;
using Subscriptions.Digest;
using Subscriptions.Email;
using Subscriptions.Health;
using Subscriptions.Infrastructure;
using Subscriptions.Matching;
using Subscriptions.Papers;
using Subscriptions.Subscribers;
using Subscriptions.Web;

// `Subscriptions [VERB] [options] [--Key=Value ...]`: the verbs are in CommandLine/, serve is below.
return await Verbs.RunAsync(args, ServeAsync);

static async Task<int> ServeAsync(string[] settings)
{
    var builder = WebApplication.CreateBuilder(settings).WithDefaultUrl();

    // Configure the database; migrations run before anything else starts
    builder.Services.AddDatabase().AddMigrationsAtStartup().AddHealth().AddShutdownTimeout();

    // Configure email: one sender, SMTP or the pickup folder
    builder.Services.AddEmail();

    // Configure papers (the sources of each day's list) and matching (topics against them)
    builder.Services.AddPapers().AddMatching();

    // Configure the subscriber lifecycle: signup, confirm, preferences, unsubscribe, and their emails
    builder.Services.AddSubscribers();

    // Configure the daily digest (the clustered Quartz trigger, this instance's delivery senders) and bounces (the mailbox reader)
    builder.Services.AddDigestBackground(builder.Configuration).AddBounces(builder.Configuration);

    // Configure what every request gets: body limits, problem answers, rate-limit answers, security headers
    builder.Services.AddWeb();

    var app = builder.Build();

    app.UseWeb();

    app.MapSubscribers();
    app.MapPreferences();
    app.MapPapers();
    app.MapMatching();
    app.MapHealth();
    app.MapBounces();

    // Every bad setting at once, before anything starts.
    app.Services.GetRequiredService<IStartupValidator>().Validate();
    await app.RunBoundedAsync();
    return Verbs.Done;
}

/// <summary>The entry point, named so tests can host the app with <c>WebApplicationFactory&lt;Program&gt;</c>.</summary>
public partial class Program;
