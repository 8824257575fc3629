using Microsoft.Extensions.DependencyInjection;
using Microsoft.Playwright;
using Subscriptions.Digest;
using Subscriptions.Operators;
using Subscriptions.Papers;
using Subscriptions.Tests.Infrastructure;

namespace Subscriptions.Tests;

/// <summary>
/// The console in a real browser: Debian's Chromium (headless), driven by Playwright with the system executable
/// (no browser download). Also takes the README's screenshot of the dashboard (dashboard.png in the test output).
/// </summary>
public sealed class ConsoleBrowserTests(TestDatabase database) : IClassFixture<TestDatabase>
{
    private const string Operator = "browser-ops@example.org";
    private const string Password = "a long browser test password";

    [Fact]
    public async Task OperatorSignsInSeesTheCountsPausesResumesAndLooksUpASubscriber()
    {
        await using var smtp = await TestSmtpServer.StartNewAsync();
        await using var app = new TestApp(database, smtp);
        var address = app.StartOnKestrel();
        await app.Services.GetRequiredService<OperatorAccounts>().AddOrResetAsync(Operator, Password, CancellationToken.None);
        await SeedADayAsync(app);

        using var playwright = await Playwright.CreateAsync();
        await using var browser = await playwright.Chromium.LaunchAsync(new BrowserTypeLaunchOptions
        {
            ExecutablePath = ChromiumPath(),
            Headless = true,
            // As root Chromium needs --no-sandbox; the rest keep it from calling home on a closed network.
            Args = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking", "--disable-component-update", "--disable-sync"],
        });
        var page = await browser.NewPageAsync(new BrowserNewPageOptions { ViewportSize = new ViewportSize { Width = 1280, Height = 900 } });

        // Sign in: /admin sends a browser without a session to the sign-in page.
        await page.GotoAsync(new Uri(address, "/admin").ToString());
        Assert.EndsWith("/admin/signin?ReturnUrl=%2Fadmin", page.Url);
        await page.FillAsync("#email", Operator);
        await page.FillAsync("#password", Password);
        await page.ClickAsync("form[action='/admin/signin'] button[type=submit]");
        await page.WaitForSelectorAsync("#run-counts");

        // The counts match the database.
        foreach (var status in new[] { "active", "pending", "unsubscribed" })
        {
            var expected = await database.ScalarAsync<long>("SELECT count(*) FROM subscribers WHERE status = @status", new { status });
            Assert.Equal(expected.ToString(System.Globalization.CultureInfo.InvariantCulture), await page.TextContentAsync($"[data-status={status}] strong"));
        }
        var today = app.Services.GetRequiredService<Dashboard>().Today;
        foreach (var (cell, status) in new[] { ("sent", "sent"), ("failed", "failed") })
        {
            var expected = await database.ScalarAsync<long>("SELECT count(*) FROM deliveries WHERE day = @today AND status = @status", new { today, status });
            Assert.Equal(expected.ToString(System.Globalization.CultureInfo.InvariantCulture), await page.TextContentAsync($"[data-count={cell}]"));
        }
        Assert.Contains("Finished", await page.TextContentAsync("#run-state"));
        Assert.Contains("User unknown", await page.TextContentAsync("#failure-list"));
        await page.ScreenshotAsync(new PageScreenshotOptions { Path = Path.Combine(AppContext.BaseDirectory, "dashboard.png"), FullPage = true });

        // Pause, then resume: the switch every instance reads.
        await page.ClickAsync("button:has-text('Pause sending')");
        Assert.Contains("paused", await page.TextContentAsync("#sending-state"));
        Assert.True(await database.ScalarAsync<bool>("SELECT paused FROM sending_control"));
        // The browser was sent on to the dashboard (post/redirect/get): a reload shows it again, without the notice, and
        // posts nothing.
        Assert.EndsWith("/admin", page.Url);
        Assert.Contains("paused on every instance", await page.TextContentAsync("[role=status]"));
        await page.ReloadAsync();
        Assert.Equal(0, await page.Locator("[role=status]").CountAsync());
        Assert.Contains("paused", await page.TextContentAsync("#sending-state"));
        await page.ClickAsync("button:has-text('Resume sending')");
        Assert.Contains("Sending resumed.", await page.TextContentAsync("[role=status]"));
        Assert.False(await database.ScalarAsync<bool>("SELECT paused FROM sending_control"));

        // Look up a subscriber.
        await page.FillAsync("#lookup", "Grace@Example.org");
        await page.ClickAsync("nav button:has-text('Look up')");
        Assert.Equal("grace@example.org", await page.TextContentAsync("#subscriber-email"));
        Assert.Equal("active", await page.TextContentAsync("#subscriber-status"));
        Assert.Contains("sent", await page.TextContentAsync("#deliveries"));
    }

    /// <summary>A day's papers, subscribers in every state with signups spread over weeks, the day's run sent, one refusal.</summary>
    private async Task SeedADayAsync(TestApp app)
    {
        var today = app.Services.GetRequiredService<Dashboard>().Today;
        await database.SaveDayAsync(today,
            PaperRecord.Create("2611.10001", "Monocular Depth Estimation in the Wild", "Depth.", ["A. Author"], null, 140),
            PaperRecord.Create("2611.10002", "Sparse Autoencoders for Interpretability", "Features.", ["B. Author"], null, 95),
            PaperRecord.Create("2611.10003", "Lidar Odometry at Night", "Scans.", ["C. Author"], null, 12));
        string[][] topics = [["depth estimation"], ["interpretability", "sparse autoencoders"], ["lidar"], ["depth estimation", "lidar"]];
        var names = new[] { "ada", "grace", "alan", "emmy", "kurt", "barbara", "edsger", "donald", "frances", "john", "margaret", "tony" };
        for (var i = 0; i < names.Length; i++)
        {
            var status = i % 5 == 4 ? "pending" : i % 7 == 6 ? "unsubscribed" : "active";
            var (id, _) = await database.AddSubscriberAsync($"{names[i]}@example.org", status, null, topics[i % topics.Length]);
            await database.ExecuteAsync("""
                UPDATE subscribers SET created_at = now() - make_interval(days => @days), confirmed_at = CASE WHEN status <> 'pending' THEN now() - make_interval(days => @days - 1) END,
                       unsubscribed_at = CASE WHEN status = 'unsubscribed' THEN now() - make_interval(days => 2) END
                WHERE id = @id
                """, new { id, days = 3 + i * 6 });
        }
        await app.Services.GetRequiredService<DigestRunner>().PlanDayAsync(today, ingestFirst: false, _ => { }, CancellationToken.None);
        await database.ExecuteAsync("""
            WITH refused AS (DELETE FROM delivery_queue WHERE delivery_id = (SELECT d.id FROM deliveries d JOIN subscribers s ON s.id = d.subscriber_id WHERE s.email = 'alan@example.org' AND d.day = @today) RETURNING delivery_id)
            UPDATE deliveries SET status = 'failed', attempts = 1, last_error = '550 5.1.1 <alan@example.org>: Recipient address rejected: User unknown'
            WHERE id IN (SELECT delivery_id FROM refused)
            """, new { today });
        await app.Services.GetRequiredService<DeliverySender>().SendDueAsync([today], new SendCounters(), CancellationToken.None);
    }

    /// <summary>Debian's Chromium (<c>.ci/run</c> installs it), or the browser <c>CHROMIUM_PATH</c> names.</summary>
    private static string ChromiumPath()
    {
        var path = Environment.GetEnvironmentVariable("CHROMIUM_PATH") is { Length: > 0 } configured ? configured : "/usr/bin/chromium";
        return File.Exists(path) ? path : throw new InvalidOperationException($"No browser at {path}: install Debian's chromium (apt-get install chromium), as .ci/run does, or set CHROMIUM_PATH.");
    }
}
