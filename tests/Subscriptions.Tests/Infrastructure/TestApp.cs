using System.Text.RegularExpressions;
using Microsoft.AspNetCore.Hosting;
using Microsoft.AspNetCore.Mvc.Testing;
using Microsoft.AspNetCore.TestHost;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Logging.Testing;
using MimeKit;
using Subscriptions.Infrastructure;

namespace Subscriptions.Tests.Infrastructure;

/// <summary>
/// The real service in memory, pointed at a test database and either a test SMTP server or a
/// pickup folder of its own. Settings are the service's own configuration keys.
/// </summary>
public sealed class TestApp : WebApplicationFactory<Program>
{
    public const string BaseUrl = "https://subscriptions.test";
    private readonly Dictionary<string, string?> _settings;
    private readonly TimeProvider? _time;
    private readonly Action<IServiceCollection>? _services;

    public TestApp(
        TestDatabase database, TestSmtpServer? smtp = null, TimeProvider? time = null, IDictionary<string, string?>? settings = null,
        Action<IServiceCollection>? services = null)
    {
        _services = services;
        PickupDirectory = Path.Combine(Path.GetTempPath(), $"subscriptions-outbox-{Guid.NewGuid():N}");
        _time = time;
        _settings = new Dictionary<string, string?>
        {
            ["ConnectionStrings:Postgres"] = database.ConnectionString,
            ["App:BaseUrl"] = BaseUrl,
            ["App:TokenSecret"] = "test-secret-that-is-long-enough-to-sign-links",
            ["App:SignupsPerMinute"] = "10000",
            ["Mail:From"] = "Trending Papers <papers@subscriptions.test>",
            ["Mail:PickupDirectory"] = PickupDirectory,
            ["Mail:PollInterval"] = "00:00:00.100",
            ["Mail:RetryDelay"] = "00:00:00.200",
            ["Smtp:Security"] = "None",
            ["Smtp:RetryDelay"] = "00:00:00.050",
            ["Smtp:Timeout"] = "00:00:05",
            ["Smtp:BreakDuration"] = "00:00:00.500",
            // Web only: tests run the digest themselves, so no background sender races them; the
            // scheduling tests turn the trigger (and the background senders with it) on.
            ["Digest:Enabled"] = "false",
            ["Digest:PollInterval"] = "00:00:00.200",
            ["Digest:RetryDelay"] = "00:00:00.200",
            // Kept for good: tests whose clock runs years ahead would otherwise see their rows deleted; RetentionTests turn it on.
            ["Retention:Deliveries"] = "0",
            ["Retention:UnconfirmedSignups"] = "0",
            ["Retention:BounceRecords"] = "0",
        };
        if (smtp is not null)
        {
            _settings["Smtp:Host"] = "127.0.0.1";
            _settings["Smtp:Port"] = smtp.Port.ToString(System.Globalization.CultureInfo.InvariantCulture);
        }
        // A null takes the test's default away: the service's own applies.
        foreach (var (key, value) in settings ?? new Dictionary<string, string?>())
        {
            if (value is null)
            {
                _settings.Remove(key);
            }
            else
            {
                _settings[key] = value;
            }
        }
    }

    public string PickupDirectory { get; }

    /// <summary>What the app logged, besides the console.</summary>
    public FakeLogCollector Logs => Services.GetRequiredService<FakeLogCollector>();

    protected override void ConfigureWebHost(IWebHostBuilder builder)
    {
        foreach (var (key, value) in _settings)
        {
            builder.UseSetting(key, value);
        }
        builder.ConfigureLogging(logging => logging.AddFakeLogging());
        if (_time is not null)
        {
            builder.ConfigureTestServices(services => services.AddSingleton(_time));
        }
        if (_services is not null)
        {
            builder.ConfigureTestServices(_services);
        }
    }

    /// <summary>
    /// Serves on a real Kestrel listener (loopback, a free port) instead of the in-memory test server, for
    /// what only a real server does: body limits on chunked bodies, slow-body timeouts, response headers.
    /// </summary>
    public Uri StartOnKestrel()
    {
        _settings["urls"] = "http://127.0.0.1:0";
        UseKestrel();
        StartServer();
        var addresses = Services.GetRequiredService<Microsoft.AspNetCore.Hosting.Server.IServer>()
            .Features.Get<Microsoft.AspNetCore.Hosting.Server.Features.IServerAddressesFeature>()!.Addresses;
        return new Uri(addresses.First());
    }

    /// <summary>A client that does not follow redirects and sends no cookies, like a mail client's link.</summary>
    public HttpClient CreatePlainClient() =>
        CreateClient(new WebApplicationFactoryClientOptions { AllowAutoRedirect = false, HandleCookies = false, BaseAddress = new Uri(BaseUrl) });

    /// <summary>The first link to this app's <paramref name="path"/> in the message's text part, made relative.</summary>
    public static string LinkIn(MimeMessage message, string path)
    {
        var text = message.TextBody ?? throw new InvalidOperationException("The message has no plain-text part.");
        var match = Regex.Match(text, Regex.Escape(BaseUrl + path) + @"\?token=[A-Za-z0-9_-]+");
        return match.Success
            ? match.Value[BaseUrl.Length..]
            : throw new InvalidOperationException($"No {path} link in:\n{text}");
    }

    /// <summary>Waits for <c>.eml</c> files in the pickup folder and returns them parsed.</summary>
    public Task<IReadOnlyList<MimeMessage>> WaitForPickupAsync(int count, TimeSpan? timeout = null) =>
        Eventually.ValueAsync(PickedUpAsync, messages => messages.Count >= count,
            $"{count} .eml file(s) in {PickupDirectory}", messages => $"{messages.Count} file(s)", timeout);

    /// <summary>The <c>.eml</c> files in the pickup folder now, parsed, in file name order.</summary>
    public async Task<IReadOnlyList<MimeMessage>> PickedUpAsync()
    {
        var files = Directory.Exists(PickupDirectory) ? Directory.GetFiles(PickupDirectory, "*.eml").Order().ToList() : [];
        var messages = new List<MimeMessage>();
        foreach (var file in files)
        {
            messages.Add(await MimeMessage.LoadAsync(file));
        }
        return messages;
    }

    /// <summary>
    /// Returns once the app's <typeparamref name="TWorker"/> has finished a whole round of work that began after
    /// this call: whatever it would have done with the state as it is now, it has done.
    /// </summary>
    internal async Task WaitForFreshRoundAsync<TWorker>() where TWorker : PollingWorker
    {
        var worker = Services.GetServices<IHostedService>().OfType<TWorker>().Single();
        // The round under way now may have begun before this call; the one after it cannot have.
        var target = worker.CompletedRounds + 2;
        await Eventually.TrueAsync(() => worker.CompletedRounds >= target,
            $"{typeof(TWorker).Name} to finish a round begun after the test asked (round {target})");
    }

    protected override void Dispose(bool disposing)
    {
        base.Dispose(disposing);
        if (disposing && Directory.Exists(PickupDirectory))
        {
            Directory.Delete(PickupDirectory, recursive: true);
        }
    }
}
