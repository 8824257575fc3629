using System.Net;
using System.Text.RegularExpressions;
using Microsoft.AspNetCore.Mvc.Testing;
using Microsoft.AspNetCore.Mvc.Testing.Handlers;
using Microsoft.Extensions.DependencyInjection;
using Subscriptions.Digest;
using Subscriptions.Operators;
using Subscriptions.Tests.Infrastructure;

namespace Subscriptions.Tests;

/// <summary>The console over HTTP: sign-in, sessions, antiforgery, lookups, actions, and the pause every sender obeys.</summary>
public sealed partial class OperatorConsoleTests(TestDatabase database) : IClassFixture<TestDatabase>, IAsyncLifetime
{
    private const string Operator = "ops@example.org";
    private const string Password = "correct horse battery staple";
    private TestSmtpServer _smtp = null!;
    private TestApp _app = null!;

    public async Task InitializeAsync()
    {
        _smtp = await TestSmtpServer.StartNewAsync();
        _app = new TestApp(database, _smtp);
        await _app.Services.GetRequiredService<OperatorAccounts>().AddOrResetAsync(Operator, Password, CancellationToken.None);
    }

    public async Task DisposeAsync()
    {
        await _app.Services.GetRequiredService<SendingControl>().SetAsync(false, "test", CancellationToken.None);
        await _app.DisposeAsync();
        await _smtp.DisposeAsync();
    }

    [Theory]
    [InlineData("GET", "/admin")]
    [InlineData("GET", "/admin/subscribers?email=a%40example.org")]
    [InlineData("POST", "/admin/sending/pause")]
    [InlineData("POST", "/admin/digest/run")]
    public async Task NothingUnderAdminAnswersWithoutASession(string method, string path)
    {
        using var client = BrowserClient();

        var response = await client.SendAsync(new HttpRequestMessage(new HttpMethod(method), path)
        {
            Content = method == "POST" ? new FormUrlEncodedContent([]) : null,
        });

        Assert.Equal(HttpStatusCode.Redirect, response.StatusCode);
        Assert.StartsWith("/admin/signin", response.Headers.Location!.OriginalString.Replace(TestApp.BaseUrl, "", StringComparison.Ordinal));
        Assert.False((await _app.Services.GetRequiredService<SendingControl>().GetAsync(CancellationToken.None)).Paused);
    }

    [Fact]
    public async Task AWrongPasswordAndAnUnknownAddressGetTheSameRefusal()
    {
        using var client = BrowserClient();

        var wrongPassword = await SignInAsync(client, Operator, "not the password at all");
        var unknownAddress = await SignInAsync(client, "nobody@example.org", Password);

        Assert.Equal(HttpStatusCode.BadRequest, wrongPassword.StatusCode);
        Assert.Equal(HttpStatusCode.BadRequest, unknownAddress.StatusCode);
        var refusal = "That address and password do not match an operator account.";
        Assert.Contains(refusal, await wrongPassword.Content.ReadAsStringAsync());
        Assert.Contains(refusal, await unknownAddress.Content.ReadAsStringAsync());
        Assert.Equal(HttpStatusCode.Redirect, (await client.GetAsync("/admin")).StatusCode);
    }

    [Fact]
    public async Task AControlCharacterInTheAddressIsRefusedLikeAWrongPassword()
    {
        using var client = BrowserClient();
        // A URL-encoded form's %00 is refused by ASP.NET's own form reader; a multipart form passes the NUL on as it is.
        var page = await client.GetStringAsync("/admin/signin");
        using var withNul = new MultipartFormDataContent
        {
            { new StringContent(TokenIn(page)), "__RequestVerificationToken" },
            { new StringContent("ops\0@example.org"), "email" },
            { new StringContent(Password), "password" },
        };

        var refused = await client.PostAsync("/admin/signin", withNul);

        Assert.Equal(HttpStatusCode.BadRequest, refused.StatusCode);
        Assert.Contains("That address and password do not match an operator account.", await refused.Content.ReadAsStringAsync());
        Assert.Equal(HttpStatusCode.BadRequest, (await SignInAsync(client, "ops@example.org\r\n", Password)).StatusCode);
        await SignInAsync(client, Operator, Password);
        var lookup = await client.GetAsync("/admin/subscribers?email=someone%00@example.org");
        Assert.Equal(HttpStatusCode.BadRequest, lookup.StatusCode);
        Assert.Contains("control character", await lookup.Content.ReadAsStringAsync());
    }

    [Theory]
    [InlineData("/admin\r\nSet-Cookie: planted=1")]
    [InlineData("/admin/subscribers?email=é@example.org")]
    [InlineData("/admin/a path")]
    public async Task AReturnPathNoHeaderCanCarryLeadsToTheDashboard(string returnUrl)
    {
        using var client = BrowserClient();

        var signedIn = await SignInAsync(client, Operator, Password, returnUrl);

        Assert.Equal(HttpStatusCode.Redirect, signedIn.StatusCode);
        Assert.Equal("/admin", signedIn.Headers.Location?.OriginalString);
    }

    [Fact]
    public async Task SignInSetsAStrictHttpOnlyCookieAndOpensTheDashboard()
    {
        using var client = BrowserClient();

        var signedIn = await SignInAsync(client, Operator, Password);

        Assert.Equal(HttpStatusCode.Redirect, signedIn.StatusCode);
        var cookie = Assert.Single(signedIn.Headers.GetValues("Set-Cookie"), value => value.StartsWith("subscriptions_operator=", StringComparison.Ordinal));
        Assert.Contains("httponly", cookie, StringComparison.OrdinalIgnoreCase);
        Assert.Contains("samesite=strict", cookie, StringComparison.OrdinalIgnoreCase);
        Assert.Contains("path=/admin", cookie, StringComparison.OrdinalIgnoreCase);
        var dashboard = await client.GetAsync("/admin");
        Assert.Equal(HttpStatusCode.OK, dashboard.StatusCode);
        Assert.Contains("Run of", await dashboard.Content.ReadAsStringAsync());
    }

    [Fact]
    public async Task AFormWithoutItsAntiforgeryTokenChangesNothing()
    {
        using var client = BrowserClient();
        await SignInAsync(client, Operator, Password);

        var forged = await client.PostAsync("/admin/sending/pause", new FormUrlEncodedContent([]));
        var wrongToken = await client.PostAsync("/admin/sending/pause", new FormUrlEncodedContent([KeyValuePair.Create("__RequestVerificationToken", "forged")]));

        Assert.Equal(HttpStatusCode.BadRequest, forged.StatusCode);
        Assert.Contains("This form has expired", await forged.Content.ReadAsStringAsync());
        Assert.Equal(HttpStatusCode.BadRequest, wrongToken.StatusCode);
        Assert.False((await _app.Services.GetRequiredService<SendingControl>().GetAsync(CancellationToken.None)).Paused);
    }

    [Fact]
    public async Task SigningOutEndsTheSessionACopiedCookieToo()
    {
        using var client = BrowserClient();
        await _app.Services.GetRequiredService<OperatorAccounts>().AddOrResetAsync("leaving@example.org", Password, CancellationToken.None);
        var signedIn = await SignInAsync(client, "leaving@example.org", Password);
        var cookie = signedIn.Headers.GetValues("Set-Cookie").Single(value => value.StartsWith("subscriptions_operator=", StringComparison.Ordinal)).Split(';')[0];
        using var copy = _app.CreateClient(new WebApplicationFactoryClientOptions { AllowAutoRedirect = false, HandleCookies = false, BaseAddress = new Uri(TestApp.BaseUrl) });
        copy.DefaultRequestHeaders.Add("Cookie", cookie);
        Assert.Equal(HttpStatusCode.OK, (await copy.GetAsync("/admin")).StatusCode);

        var page = await client.GetStringAsync("/admin");
        var signedOut = await client.PostAsync("/admin/signout", new FormUrlEncodedContent([KeyValuePair.Create("__RequestVerificationToken", TokenIn(page))]));

        Assert.Equal(HttpStatusCode.Redirect, signedOut.StatusCode);
        Assert.Equal(HttpStatusCode.Redirect, (await copy.GetAsync("/admin")).StatusCode);
    }

    [Fact]
    public async Task AResetPasswordEndsEarlierSessions()
    {
        using var client = BrowserClient();
        await _app.Services.GetRequiredService<OperatorAccounts>().AddOrResetAsync("reset@example.org", Password, CancellationToken.None);
        await SignInAsync(client, "reset@example.org", Password);
        Assert.Equal(HttpStatusCode.OK, (await client.GetAsync("/admin")).StatusCode);

        await _app.Services.GetRequiredService<OperatorAccounts>().AddOrResetAsync("reset@example.org", "a brand new long password", CancellationToken.None);

        Assert.Equal(HttpStatusCode.Redirect, (await client.GetAsync("/admin")).StatusCode);
    }

    [Theory]
    [InlineData("%25%40example.org", HttpStatusCode.NotFound)] // %@example.org: a LIKE wildcard would match everyone
    [InlineData("_%25", HttpStatusCode.NotFound)]
    [InlineData("lookup%27%3B%20DROP%20TABLE%20subscribers%3B--%40example.org", HttpStatusCode.NotFound)]
    public async Task CraftedLookupsFindNothingAndChangeNothing(string email, HttpStatusCode expected)
    {
        if (await database.SubscriberStatusAsync("someone-real@example.org") is null)
        {
            await database.AddSubscriberAsync("someone-real@example.org", "active", null, "lidar");
        }
        using var client = BrowserClient();
        await SignInAsync(client, Operator, Password);

        var response = await client.GetAsync($"/admin/subscribers?email={email}");

        Assert.Equal(expected, response.StatusCode);
        var page = await response.Content.ReadAsStringAsync();
        Assert.Contains("No subscriber has that address.", page);
        Assert.DoesNotContain("someone-real@example.org", page);
        Assert.Equal("active", await database.SubscriberStatusAsync("someone-real@example.org"));
    }

    [Fact]
    public async Task ATenKilobyteLookupIsRefused()
    {
        using var client = BrowserClient();
        await SignInAsync(client, Operator, Password);

        var response = await client.GetAsync($"/admin/subscribers?email={new string('a', 10 * 1024)}%40example.org");

        Assert.Equal(HttpStatusCode.BadRequest, response.StatusCode);
        Assert.Contains("longer than any email address", await response.Content.ReadAsStringAsync());
    }

    [Fact]
    public async Task LookupShowsTheSubscriberAndSuppressUnsubscribeAndLiftWork()
    {
        var (id, _) = await database.AddSubscriberAsync("looked-up@example.org", "active", null, "depth estimation", "lidar");
        using var client = BrowserClient();
        await SignInAsync(client, Operator, Password);

        var page = await client.GetStringAsync("/admin/subscribers?email=Looked-Up%40example.org");
        Assert.Contains("looked-up@example.org", page);
        Assert.Contains("depth estimation · lidar", WebUtility.HtmlDecode(page));

        Assert.Contains("is suppressed", await PostActionAsync(client, page, $"/admin/subscribers/{id}/suppress"));
        Assert.Equal(1, await database.ScalarAsync<long>("SELECT count(*) FROM suppressions WHERE email = 'looked-up@example.org'"));
        page = await client.GetStringAsync("/admin/subscribers?email=looked-up%40example.org");
        Assert.Contains("suppression of looked-up@example.org is lifted", await PostActionAsync(client, page, $"/admin/subscribers/{id}/lift-suppression"));
        Assert.Equal(0, await database.ScalarAsync<long>("SELECT count(*) FROM suppressions WHERE email = 'looked-up@example.org'"));
        page = await client.GetStringAsync("/admin/subscribers?email=looked-up%40example.org");
        Assert.Contains("is unsubscribed", await PostActionAsync(client, page, $"/admin/subscribers/{id}/unsubscribe"));
        Assert.Equal("unsubscribed", await database.SubscriberStatusAsync("looked-up@example.org"));
    }

    [Fact]
    public async Task EraseNeedsItsBoxTickedAndThenLeavesNothingOfASubscriberWithADigestOnItsWay()
    {
        var day = new DateOnly(2026, 11, 23);
        await database.SaveDayAsync(day, Papers.PaperRecord.Create("2611.09077", "Lidar Odometry at Scale", "Scans.", ["A. Author"], null, 5));
        var (id, _) = await database.AddSubscriberAsync("erase-me@example.org", "active", null, "lidar");
        await _app.Services.GetRequiredService<DigestRunner>().PlanDayAsync(day, ingestFirst: false, _ => { }, CancellationToken.None);
        Assert.Equal(1, await database.ScalarAsync<long>("SELECT count(*) FROM deliveries WHERE subscriber_id = @id", new { id }));
        using var client = BrowserClient();
        await SignInAsync(client, Operator, Password);
        var page = await client.GetStringAsync("/admin/subscribers?email=erase-me%40example.org");

        var unticked = await client.PostAsync($"/admin/subscribers/{id}/erase",
            new FormUrlEncodedContent([KeyValuePair.Create("__RequestVerificationToken", TokenIn(page))]));
        Assert.Equal(HttpStatusCode.BadRequest, unticked.StatusCode);
        Assert.Equal("active", await database.SubscriberStatusAsync("erase-me@example.org"));

        var erased = await client.PostAsync($"/admin/subscribers/{id}/erase",
            new FormUrlEncodedContent([KeyValuePair.Create("__RequestVerificationToken", TokenIn(page)), KeyValuePair.Create("confirm", "yes")]));
        Assert.Equal(HttpStatusCode.SeeOther, erased.StatusCode); // to the empty lookup: there is no such subscriber any more
        Assert.Equal("/admin/subscribers", erased.Headers.Location?.OriginalString);
        Assert.Contains("is erased", await client.GetStringAsync(erased.Headers.Location));
        var afterwards = await client.PostAsync($"/admin/subscribers/{id}/suppress",
            new FormUrlEncodedContent([KeyValuePair.Create("__RequestVerificationToken", TokenIn(page))]));
        Assert.Equal(HttpStatusCode.NotFound, afterwards.StatusCode); // an action on someone no longer there: the page, not a redirect
        Assert.Contains("No such subscriber; nothing was changed.", await afterwards.Content.ReadAsStringAsync());
        foreach (var table in new[] { "subscribers WHERE id = @id", "topics WHERE subscriber_id = @id", "deliveries WHERE subscriber_id = @id",
                     "email_outbox WHERE subscriber_id = @id", "delivery_queue q WHERE NOT EXISTS (SELECT 1 FROM deliveries d WHERE d.id = q.delivery_id)" })
        {
            Assert.Equal(0, await database.ScalarAsync<long>($"SELECT count(*) FROM {table}", new { id }));
        }
        await _app.Services.GetRequiredService<DeliverySender>().SendDueAsync([day], new SendCounters(), CancellationToken.None);
        Assert.Empty(_smtp.MessagesTo("erase-me@example.org"));
    }

    [Fact]
    public async Task ThePapersOfTheDayCountTheDigestsTheyWentIntoWhateverTheSubscribersLocalDate()
    {
        var dashboard = _app.Services.GetRequiredService<Dashboard>();
        var today = dashboard.Today;
        await database.SaveDayAsync(today, Papers.PaperRecord.Create("2611.09555", "Lidar Under the Sea", "Sonar.", ["A. Author"], null, 5));
        var paper = await database.ScalarAsync<long>("SELECT id FROM papers WHERE arxiv_id = '2611.09555'");
        // Sent with the day's papers: in the default slot, on the subscriber's next local date (east of the operator, or the
        // next day's slot before the default time), and on the date before (far west of the operator).
        foreach (var (email, localDate) in new[] { ("here@example.org", today), ("tokyo@example.org", today.AddDays(1)), ("early@example.org", today.AddDays(-1)) })
        {
            var (id, _) = await database.AddSubscriberAsync(email, "active", null, "lidar");
            await database.ExecuteAsync("""
                INSERT INTO deliveries (subscriber_id, day, papers, status, attempts, next_attempt_at, created_at, sent_at)
                VALUES (@id, @localDate, jsonb_build_array(jsonb_build_object('paper_id', @paper, 'topics', jsonb_build_array('lidar'), 'day', @today::text)),
                        'sent', 1, now(), now(), now())
                """, new { id, localDate, paper, today });
        }

        var view = await dashboard.BuildAsync(notice: null, CancellationToken.None);

        Assert.Equal(3, Assert.Single(view.Papers, used => used.Title == "Lidar Under the Sea").Digests);
    }

    [Fact]
    public async Task ResendConfirmationQueuesAFreshLinkForAPendingSubscriber()
    {
        var (id, _) = await database.AddSubscriberAsync("pending-one@example.org", "pending", null, "lidar");
        await database.ExecuteAsync("UPDATE subscribers SET confirmation_nonce = decode(md5(random()::text), 'hex'), confirmation_expires_at = now() + interval '1 day' WHERE id = @id", new { id });
        using var client = BrowserClient();
        await SignInAsync(client, Operator, Password);

        var page = await client.GetStringAsync("/admin/subscribers?email=pending-one%40example.org");
        Assert.Contains("is queued", await PostActionAsync(client, page, $"/admin/subscribers/{id}/resend-confirmation"));
        // A reload is of the page the action redirected to: it queues nothing more, and the notice is said once.
        Assert.DoesNotContain("is queued", await client.GetStringAsync("/admin/subscribers?email=pending-one%40example.org"));

        await Eventually.TrueAsync(() => _smtp.MessagesTo("pending-one@example.org").Count == 1, "the confirmation to arrive");
        Assert.Contains("Confirm", _smtp.MessagesTo("pending-one@example.org")[0].Subject);
        Assert.Equal(1, await database.ScalarAsync<long>("SELECT count(*) FROM email_outbox WHERE subscriber_id = @id", new { id }));
    }

    [Fact]
    public async Task PausedSendersClaimNothingUntilResumed()
    {
        var day = new DateOnly(2026, 11, 25);
        await database.SaveDayAsync(day, Papers.PaperRecord.Create("2611.09001", "Lidar Place Recognition", "Scans.", ["A. Author"], null, 3));
        await database.AddSubscriberAsync("paused-reader@example.org", "active", null, "lidar");
        await _app.Services.GetRequiredService<DigestRunner>().PlanDayAsync(day, ingestFirst: false, _ => { }, CancellationToken.None);
        using var client = BrowserClient();
        await SignInAsync(client, Operator, Password);

        var dashboard = await client.GetStringAsync("/admin");
        var paused = await PostActionAsync(client, dashboard, "/admin/sending/pause");
        Assert.Contains("Sending is <strong>paused</strong>", paused);
        var whilePaused = new SendCounters();
        await _app.Services.GetRequiredService<DeliverySender>().SendDueAsync([day], whilePaused, CancellationToken.None);
        Assert.Equal(0, whilePaused.Sent);
        Assert.Empty(_smtp.MessagesTo("paused-reader@example.org"));

        Assert.Contains("Sending resumed.", await PostActionAsync(client, paused, "/admin/sending/resume"));
        var afterResume = new SendCounters();
        await _app.Services.GetRequiredService<DeliverySender>().SendDueAsync([day], afterResume, CancellationToken.None);
        Assert.True(afterResume.Sent >= 1); // with the deliveries of other tests' subscribers
        Assert.Single(_smtp.MessagesTo("paused-reader@example.org"));
    }

    [Fact]
    public async Task GuessesAtOneAccountFromManyClientsAreRefusedAfterTheAddressHasHadItsShare()
    {
        var accounts = _app.Services.GetRequiredService<OperatorAccounts>();
        await accounts.AddOrResetAsync("guessed@example.org", Password, CancellationToken.None);
        await accounts.AddOrResetAsync("other@example.org", Password, CancellationToken.None);

        // Each guess from a client of its own: the per-client limit (5 a minute) never comes into it.
        for (var i = 0; i < SignInThrottle.AttemptsPerAddress; i++)
        {
            using var guesser = ClientFrom(IPAddress.Parse($"198.51.100.{i + 1}"));
            Assert.Equal(HttpStatusCode.BadRequest, (await SignInAsync(guesser, i % 2 == 0 ? "guessed@example.org" : " Guessed@Example.org", $"guess number {i}")).StatusCode);
        }
        using var owner = ClientFrom(IPAddress.Parse("203.0.113.9"));
        var refused = await SignInAsync(owner, "guessed@example.org", Password);
        var unknown = await SignInAsync(owner, "no-operator@example.org", "a guess");

        Assert.Equal(HttpStatusCode.TooManyRequests, refused.StatusCode);
        Assert.Contains("Too many sign-ins for this address: try again in 15 minutes.", await refused.Content.ReadAsStringAsync());
        Assert.Equal(HttpStatusCode.BadRequest, unknown.StatusCode);
        Assert.Equal("/admin", (await SignInAsync(owner, "other@example.org", Password)).Headers.Location?.OriginalString);
    }

    [Fact]
    public async Task AdminAddRefusesAPasswordFromStandardInputThatSignInWouldNeverAccept()
    {
        var environment = new Dictionary<string, string>
        {
            ["ConnectionStrings__Postgres"] = database.ConnectionString,
            ["App__TokenSecret"] = "test-secret-that-is-long-enough-to-sign-links",
        };

        var tooLong = await ServiceBinary.RunAsync(["admin", "add", "long.password@example.org", "--password-stdin"], environment, new string('p', 1025) + "\n");
        var tooShort = await ServiceBinary.RunAsync(["admin", "add", "long.password@example.org", "--password-stdin"], environment, "short\n");
        var longest = await ServiceBinary.RunAsync(["admin", "add", "long.password@example.org", "--password-stdin"], environment, new string('p', 1024) + "\n");

        Assert.Equal((64, 64), (tooLong.ExitCode, tooShort.ExitCode));
        Assert.Contains("The password must be 12 to 1024 characters long.", tooLong.Error);
        Assert.True(longest.ExitCode == 0, longest.Error);
        using var client = BrowserClient();
        Assert.Equal("/admin", (await SignInAsync(client, "long.password@example.org", new string('p', 1024))).Headers.Location?.OriginalString);
    }

    [Fact]
    public async Task AdminAddPrintsAOneTimePasswordThatSignsInOnlyToChooseAnother()
    {
        var environment = new Dictionary<string, string>
        {
            ["ConnectionStrings__Postgres"] = database.ConnectionString,
            ["App__TokenSecret"] = "test-secret-that-is-long-enough-to-sign-links",
        };

        var (exitCode, output, error) = await ServiceBinary.RunAsync(["admin", "add", "New.Operator@example.org"], environment);

        Assert.True(exitCode == 0, error);
        Assert.Contains("Created the operator new.operator@example.org.", output);
        var password = Regex.Match(output, "Password: (\\S+)").Groups[1].Value;
        Assert.Equal(20, password.Length);
        Assert.DoesNotContain(password, await database.ScalarAsync<string>("SELECT password_hash FROM operators WHERE email = 'new.operator@example.org'"));
        using var client = BrowserClient();

        // The printed password is for one sign-in: the session sees only the page that replaces it.
        var signedIn = await SignInAsync(client, "new.operator@example.org", password);
        Assert.Equal(HttpStatusCode.Redirect, signedIn.StatusCode);
        Assert.Equal("/admin/password", signedIn.Headers.Location?.OriginalString);
        using (var someoneElse = BrowserClient())
        {
            Assert.Equal(HttpStatusCode.BadRequest, (await SignInAsync(someoneElse, "new.operator@example.org", password)).StatusCode);
        }
        var dashboard = await client.GetAsync("/admin");
        Assert.Equal(HttpStatusCode.Redirect, dashboard.StatusCode);
        Assert.Equal("/admin/password", dashboard.Headers.Location?.OriginalString);
        var page = await client.GetStringAsync("/admin/password");
        var pause = await client.PostAsync("/admin/sending/pause", new FormUrlEncodedContent([KeyValuePair.Create("__RequestVerificationToken", TokenIn(page))]));
        Assert.Equal(HttpStatusCode.Redirect, pause.StatusCode);
        Assert.False((await _app.Services.GetRequiredService<SendingControl>().GetAsync(CancellationToken.None)).Paused);

        Assert.Equal(HttpStatusCode.BadRequest, (await ChoosePasswordAsync(client, page, "a-password-of-my-own", "another-password-typed")).StatusCode);
        Assert.Equal(HttpStatusCode.BadRequest, (await ChoosePasswordAsync(client, page, "short", "short")).StatusCode);
        var chosen = await ChoosePasswordAsync(client, page, "a-password-of-my-own", "a-password-of-my-own");
        Assert.Equal(HttpStatusCode.Redirect, chosen.StatusCode);
        Assert.Equal("/admin", chosen.Headers.Location?.OriginalString);
        Assert.Equal(HttpStatusCode.OK, (await client.GetAsync("/admin")).StatusCode);
        Assert.False(await database.ScalarAsync<bool>("SELECT must_change_password FROM operators WHERE email = 'new.operator@example.org'"));

        using var later = BrowserClient();
        Assert.Equal(HttpStatusCode.BadRequest, (await SignInAsync(later, "new.operator@example.org", password)).StatusCode);
        var again = await SignInAsync(later, "new.operator@example.org", "a-password-of-my-own");
        Assert.Equal("/admin", again.Headers.Location?.OriginalString);
    }

    [Fact]
    public async Task ChoosingAnotherPasswordTakesTheCurrentOne()
    {
        await _app.Services.GetRequiredService<OperatorAccounts>().AddOrResetAsync("changer@example.org", "the changer's own password", CancellationToken.None);
        using var client = BrowserClient();
        await SignInAsync(client, "changer@example.org", "the changer's own password");
        var page = await client.GetStringAsync("/admin/password");
        Assert.Contains("name=\"current\"", page);

        // A session's cookie alone (a shared machine, a session left open) took the account: its owner's password and sessions gone.
        var without = await ChoosePasswordAsync(client, page, "a-taken-over-password", "a-taken-over-password");
        var wrong = await ChoosePasswordAsync(client, page, "a-taken-over-password", "a-taken-over-password", current: "a guess at the password");

        Assert.Equal([HttpStatusCode.BadRequest, HttpStatusCode.BadRequest], [without.StatusCode, wrong.StatusCode]);
        Assert.Contains("The current password is not right.", await wrong.Content.ReadAsStringAsync());
        Assert.Equal(HttpStatusCode.OK, (await client.GetAsync("/admin")).StatusCode);
        var chosen = await ChoosePasswordAsync(client, page, "the changer's next password", "the changer's next password", current: "the changer's own password");
        Assert.Equal(HttpStatusCode.Redirect, chosen.StatusCode);
        using var later = BrowserClient();
        Assert.Equal("/admin", (await SignInAsync(later, "changer@example.org", "the changer's next password")).Headers.Location?.OriginalString);
    }

    [Fact]
    public async Task GuessesAtTheCurrentPasswordWithACopiedSessionCountAsSignIns()
    {
        await _app.Services.GetRequiredService<OperatorAccounts>().AddOrResetAsync("copied@example.org", Password, CancellationToken.None);
        var session = new System.Net.CookieContainer();
        using (var owner = ClientFrom(IPAddress.Parse("203.0.113.20"), session))
        {
            Assert.Equal("/admin", (await SignInAsync(owner, "copied@example.org", Password)).Headers.Location?.OriginalString);
        }

        // The session's cookie, used from many clients: the per-client limit (5 a minute) never comes into it. The sign-in counted too.
        var statuses = new List<HttpStatusCode>();
        for (var i = 0; i < SignInThrottle.AttemptsPerAddress; i++)
        {
            using var guesser = ClientFrom(IPAddress.Parse($"198.51.100.{i + 40}"), session);
            var page = await guesser.GetStringAsync("/admin/password");
            var current = i < SignInThrottle.AttemptsPerAddress - 1 ? $"guess number {i}" : Password;
            statuses.Add((await ChoosePasswordAsync(guesser, page, "a-taken-over-password", "a-taken-over-password", current)).StatusCode);
        }

        Assert.Equal([.. Enumerable.Repeat(HttpStatusCode.BadRequest, SignInThrottle.AttemptsPerAddress - 1), HttpStatusCode.TooManyRequests], statuses);
        Assert.NotNull(await _app.Services.GetRequiredService<OperatorAccounts>().VerifyAsync("copied@example.org", Password, CancellationToken.None));
    }

    [Fact]
    public async Task ASessionAndAFormOfOneInstanceAreGoodOnAnother()
    {
        // Two replicas: processes of their own, each with its own home folder (where ASP.NET Core kept its keys), one database.
        var homes = new[] { Directory.CreateTempSubdirectory("subscriptions-home-"), Directory.CreateTempSubdirectory("subscriptions-home-") };
        try
        {
            Dictionary<string, string> Replica(DirectoryInfo home) => new()
            {
                ["ConnectionStrings__Postgres"] = database.ConnectionString,
                ["App__TokenSecret"] = "a-secret-for-the-two-replicas-of-the-console-test",
                ["Digest__Schedule"] = "0 0 3 1 1 ? 2099",
                ["HOME"] = home.FullName,
            };
            await using var first = await ServiceBinary.ServeAsync(Replica(homes[0]));
            await using var second = await ServiceBinary.ServeAsync(Replica(homes[1]));
            using var client = new HttpClient(new HttpClientHandler { AllowAutoRedirect = false, CookieContainer = new System.Net.CookieContainer() });

            // The sign-in form from the first, posted to the second; the session it opens, used on the first.
            var page = await client.GetStringAsync(new Uri(first.Address, "/admin/signin"));
            var signIn = await client.PostAsync(new Uri(second.Address, "/admin/signin"), new FormUrlEncodedContent(
            [
                KeyValuePair.Create("__RequestVerificationToken", TokenIn(page)),
                KeyValuePair.Create("email", Operator),
                KeyValuePair.Create("password", Password),
                KeyValuePair.Create("returnUrl", "/admin"),
            ]));
            Assert.Equal(HttpStatusCode.Redirect, signIn.StatusCode);
            Assert.Equal("/admin", signIn.Headers.Location?.OriginalString);
            var dashboard = await client.GetAsync(new Uri(first.Address, "/admin"));
            Assert.Equal(HttpStatusCode.OK, dashboard.StatusCode);
        }
        finally
        {
            Array.ForEach(homes, home => home.Delete(recursive: true));
        }
    }

    private static async Task<HttpResponseMessage> ChoosePasswordAsync(HttpClient client, string page, string password, string repeat, string current = "") =>
        await client.PostAsync("/admin/password", new FormUrlEncodedContent(
        [
            KeyValuePair.Create("__RequestVerificationToken", TokenIn(page)),
            KeyValuePair.Create("current", current),
            KeyValuePair.Create("password", password),
            KeyValuePair.Create("repeat", repeat),
        ]));

    /// <summary>A browser at <paramref name="address"/> (the connection's remote address), keeping its cookies (in <paramref name="cookies"/>, when given).</summary>
    private HttpClient ClientFrom(IPAddress address, System.Net.CookieContainer? cookies = null) =>
        new(new CookieContainerHandler(cookies ?? new System.Net.CookieContainer())
        {
            InnerHandler = _app.Server.CreateHandler(context => context.Connection.RemoteIpAddress = address),
        })
        { BaseAddress = new Uri(TestApp.BaseUrl) };

    private HttpClient BrowserClient() =>
        _app.CreateClient(new WebApplicationFactoryClientOptions { AllowAutoRedirect = false, HandleCookies = true, BaseAddress = new Uri(TestApp.BaseUrl) });

    internal static async Task<HttpResponseMessage> SignInAsync(HttpClient client, string email, string password, string returnUrl = "/admin")
    {
        var page = await client.GetStringAsync("/admin/signin");
        return await client.PostAsync("/admin/signin", new FormUrlEncodedContent(
        [
            KeyValuePair.Create("__RequestVerificationToken", TokenIn(page)),
            KeyValuePair.Create("email", email),
            KeyValuePair.Create("password", password),
            KeyValuePair.Create("returnUrl", returnUrl),
        ]));
    }

    /// <summary>
    /// Posts the form of <paramref name="page"/> whose action is <paramref name="action"/>, with the page's antiforgery token,
    /// and returns the page it is redirected to (303 See Other, as a browser follows it).
    /// </summary>
    private static async Task<string> PostActionAsync(HttpClient client, string page, string action)
    {
        Assert.Contains($"action=\"{action}\"", page);
        var response = await client.PostAsync(action, new FormUrlEncodedContent([KeyValuePair.Create("__RequestVerificationToken", TokenIn(page))]));
        Assert.True(response.StatusCode == HttpStatusCode.SeeOther, $"{action}: {(int)response.StatusCode}");
        return await client.GetStringAsync(response.Headers.Location);
    }

    private static string TokenIn(string page) =>
        AntiforgeryField().Match(page) is { Success: true } match ? WebUtility.HtmlDecode(match.Groups[1].Value) : throw new InvalidOperationException($"No antiforgery token in:\n{page}");

    [GeneratedRegex("name=\"__RequestVerificationToken\"[^>]*value=\"([^\"]+)\"")]
    private static partial Regex AntiforgeryField();
}
