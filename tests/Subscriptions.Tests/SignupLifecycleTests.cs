using System.Net;
using System.Net.Http.Json;
using System.Text.RegularExpressions;
using Dapper;
using Subscriptions.Tests.Infrastructure;

namespace Subscriptions.Tests;

/// <summary>Signup, confirmation and unsubscribe end to end: real HTTP pipeline, PostgreSQL and SMTP.</summary>
public sealed class SignupLifecycleTests(TestDatabase database) : IClassFixture<TestDatabase>, IAsyncLifetime
{
    private TestSmtpServer _smtp = null!;
    private TestApp _app = null!;
    private HttpClient _client = null!;

    public async Task InitializeAsync()
    {
        _smtp = await TestSmtpServer.StartNewAsync();
        _app = new TestApp(database, _smtp);
        _client = _app.CreatePlainClient();
    }

    public async Task DisposeAsync()
    {
        _client.Dispose();
        await _app.DisposeAsync();
        await _smtp.DisposeAsync();
    }

    [Fact]
    public async Task SubscriberSignsUpConfirmsAndUnsubscribes()
    {
        var signup = await _client.SignUpAsync("ada@example.org", "depth estimation", "interpretability");
        Assert.Equal(HttpStatusCode.Accepted, signup.StatusCode);
        Assert.Equal("pending", await database.SubscriberStatusAsync("ada@example.org"));
        Assert.Equal(["depth estimation", "interpretability"], await database.QueryAsync<string>(
            "SELECT t.text FROM topics t JOIN subscribers s ON s.id = t.subscriber_id WHERE s.email = 'ada@example.org' ORDER BY position"));

        var confirmation = await _smtp.WaitForMessageToAsync("ada@example.org");
        Assert.Equal("papers@subscriptions.test", Assert.Single(confirmation.From.Mailboxes).Address);
        Assert.Contains("/subscriptions/confirm?token=", confirmation.HtmlBody);
        Assert.False(string.IsNullOrEmpty(confirmation.MessageId));
        Assert.Equal("auto-generated", confirmation.Headers["Auto-Submitted"]);
        // Until the moment the link stops working, counted from the signup.
        var expires = await database.ScalarAsync<DateTime>("SELECT confirmation_expires_at FROM subscribers WHERE email = 'ada@example.org'");
        Assert.Contains($"The link works until {expires.ToString("d MMMM yyyy, HH:mm", System.Globalization.CultureInfo.InvariantCulture)} UTC.", confirmation.TextBody);

        var confirm = await _client.GetAsync(TestApp.LinkIn(confirmation, "/subscriptions/confirm"));
        Assert.Equal(HttpStatusCode.OK, confirm.StatusCode);
        Assert.Contains("You are subscribed", await confirm.Content.ReadAsStringAsync());
        Assert.Equal("active", await database.SubscriberStatusAsync("ada@example.org"));

        // Signing up again while active changes nothing but sends a notice that carries the unsubscribe link.
        await _client.SignUpAsync("ada@example.org", "something else");
        var notice = await WaitForSecondMessageAsync("ada@example.org");
        Assert.Contains("already subscribed", notice.Subject);
        Assert.Equal(["depth estimation", "interpretability"], await database.QueryAsync<string>(
            "SELECT t.text FROM topics t JOIN subscribers s ON s.id = t.subscriber_id WHERE s.email = 'ada@example.org' ORDER BY position"));
        var unsubscribeLink = TestApp.LinkIn(notice, "/unsubscribe");
        var preferences = await _client.GetAsync(TestApp.LinkIn(notice, "/preferences"));
        Assert.Equal(HttpStatusCode.OK, preferences.StatusCode);
        Assert.Contains("depth estimation\ninterpretability</textarea>", WebUtility.HtmlDecode(await preferences.Content.ReadAsStringAsync()));

        // The page only shows a button: link scanners that fetch it change nothing.
        var page = await _client.GetAsync(unsubscribeLink);
        Assert.Equal(HttpStatusCode.OK, page.StatusCode);
        var html = await page.Content.ReadAsStringAsync();
        Assert.Contains("<form method=\"post\"", html);
        Assert.Contains("ada@example.org", html);
        Assert.Equal("active", await database.SubscriberStatusAsync("ada@example.org"));

        var unsubscribe = await _client.PostAsync(unsubscribeLink, content: null);
        Assert.Equal(HttpStatusCode.OK, unsubscribe.StatusCode);
        Assert.Contains("You are unsubscribed", await unsubscribe.Content.ReadAsStringAsync());
        Assert.Equal("unsubscribed", await database.SubscriberStatusAsync("ada@example.org"));

        var again = await _client.PostAsync(unsubscribeLink, content: null);
        Assert.Equal(HttpStatusCode.OK, again.StatusCode);
        Assert.Contains("already unsubscribed", await again.Content.ReadAsStringAsync());
    }

    [Fact]
    public async Task OneClickUnsubscribeFromTheMailClientWorks()
    {
        var notice = await ActiveSubscriberNoticeAsync("grace@example.org");

        var oneClick = await _client.PostFormAsync(TestApp.LinkIn(notice, "/unsubscribe"), ("List-Unsubscribe", "One-Click"));

        Assert.Equal(HttpStatusCode.OK, oneClick.StatusCode);
        Assert.Equal("unsubscribed", await database.SubscriberStatusAsync("grace@example.org"));
    }

    [Fact]
    public async Task AfterUnsubscribingThePagesLeadToTheSubscribersDataAndItsErasure()
    {
        var notice = await ActiveSubscriberNoticeAsync("hedy@example.org");
        var unsubscribed = await (await _client.PostAsync(TestApp.LinkIn(notice, "/unsubscribe"), content: null)).Content.ReadAsStringAsync();
        var exportLink = Regex.Match(unsubscribed, "href=\"(/preferences/export\\?token=[^\"]+)\"").Groups[1].Value;
        var eraseLink = Regex.Match(unsubscribed, "action=\"(/preferences/erase\\?token=[^\"]+)\"").Groups[1].Value;

        // An old email's "change topics" link leads to the same page, not to "this link is not valid".
        var preferences = await _client.GetAsync(TestApp.LinkIn(notice, "/preferences"));
        Assert.Equal(HttpStatusCode.OK, preferences.StatusCode);
        var preferencesPage = await preferences.Content.ReadAsStringAsync();
        Assert.Contains("You are unsubscribed", preferencesPage);
        Assert.Contains("/preferences/export?token=", preferencesPage);
        Assert.Contains("/preferences/export?token=", await (await _client.GetAsync(TestApp.LinkIn(notice, "/unsubscribe"))).Content.ReadAsStringAsync());

        var export = await _client.GetAsync(exportLink);
        Assert.Equal(HttpStatusCode.OK, export.StatusCode);
        Assert.Equal("hedy@example.org", (await export.ReadJsonAsync()).GetProperty("email").GetString());
        Assert.Contains("Delete everything?", await (await _client.PostAsync(eraseLink, content: null)).Content.ReadAsStringAsync());
        await _client.PostFormAsync(eraseLink, ("confirm", "yes"));
        Assert.Equal(0, await database.ScalarAsync<long>("SELECT count(*) FROM subscribers WHERE email = 'hedy@example.org'"));
    }

    [Fact]
    public async Task SigningUpAgainAfterUnsubscribingSendsANewConfirmation()
    {
        var (oldUnsubscribe, oldExport) = await FormerSubscriberAsync("emmy@example.org");

        // Anyone may type the address: until the new subscription is confirmed, its owner's links still reach their data,
        // and their topics and delivery time are as they left them.
        await _client.PostAsJsonAsync("/subscriptions", new
        {
            email = "emmy@example.org",
            topics = new[] { "algebraic topology", "knot theory" },
            timeZone = "Europe/Berlin",
            deliveryHour = 7,
            frequency = "weekly",
            weekday = "friday",
        });
        var messages = await WaitForMessagesAsync("emmy@example.org", 3);
        var newConfirmation = messages[2];
        Assert.Contains("Confirm", newConfirmation.Subject);
        Assert.Equal("pending", await database.SubscriberStatusAsync("emmy@example.org"));
        Assert.Equal(1, await database.ScalarAsync<long>("SELECT count(*) FROM subscribers WHERE email = 'emmy@example.org'"));
        var export = await _client.GetAsync(oldExport);
        Assert.Equal(HttpStatusCode.OK, export.StatusCode);
        var data = await export.ReadJsonAsync();
        Assert.Equal(["topic modelling"], data.GetProperty("topics").EnumerateArray().Select(t => t.GetString()));
        Assert.Equal("daily", data.GetProperty("settings").GetProperty("frequency").GetString());
        var pending = data.GetProperty("pendingSignup");
        Assert.Equal(["algebraic topology", "knot theory"], pending.GetProperty("topics").EnumerateArray().Select(t => t.GetString()));
        Assert.Equal("Europe/Berlin", pending.GetProperty("settings").GetProperty("timeZone").GetString());
        Assert.Equal("friday", pending.GetProperty("settings").GetProperty("weekday").GetString());
        Assert.Equal(["topic modelling"], await database.QueryAsync<string>(
            "SELECT t.text FROM topics t JOIN subscribers s ON s.id = t.subscriber_id WHERE s.email = 'emmy@example.org'"));
        Assert.Equal(HttpStatusCode.NotFound, (await _client.GetAsync(TestApp.LinkIn(messages[0], "/subscriptions/confirm"))).StatusCode);

        // Signed up again before that confirmation (a day later: two confirmations a day at most), the first signup's topics
        // still wait, as for any pending address.
        await database.ExecuteAsync(
            "UPDATE email_outbox o SET created_at = o.created_at - interval '1 day' FROM subscribers s WHERE s.id = o.subscriber_id AND s.email = 'emmy@example.org'");
        await _client.SignUpAsync("emmy@example.org", "something else");
        var lastConfirmation = (await WaitForMessagesAsync("emmy@example.org", 4))[3];
        Assert.Equal(HttpStatusCode.OK, (await _client.GetAsync(TestApp.LinkIn(lastConfirmation, "/subscriptions/confirm"))).StatusCode);
        Assert.Equal("active", await database.SubscriberStatusAsync("emmy@example.org"));
        // The links of the old subscription died with it, once the new one began.
        Assert.Equal(HttpStatusCode.NotFound, (await _client.GetAsync(oldUnsubscribe)).StatusCode);
        Assert.Equal(HttpStatusCode.NotFound, (await _client.GetAsync(oldExport)).StatusCode);
        Assert.Equal(["algebraic topology", "knot theory"], await database.QueryAsync<string>(
            "SELECT t.text FROM topics t JOIN subscribers s ON s.id = t.subscriber_id WHERE s.email = 'emmy@example.org' ORDER BY position"));
        var (timeZone, hour, frequency, weekday, renewedTopics) = (await database.QueryAsync<(string, int, string, int, string[]?)>(
            "SELECT time_zone, delivery_hour::int, frequency, weekday::int, renewed_topics FROM subscribers WHERE email = 'emmy@example.org'")).Single();
        Assert.Equal(("Europe/Berlin", 7, "weekly", 5, null), (timeZone, hour, frequency, weekday, renewedTopics));
    }

    [Fact]
    public async Task ASignupAgainThatEndsUnconfirmedLeavesNothingOfWhatItAskedFor()
    {
        var (oldUnsubscribe, oldExport) = await FormerSubscriberAsync("ida@example.org");
        await _client.SignUpAsync("ida@example.org", "someone else's topic");
        Assert.Equal("someone else's topic", (await (await _client.GetAsync(oldExport)).ReadJsonAsync()).GetProperty("pendingSignup").GetProperty("topics")[0].GetString());

        // Its owner, who did not ask for it, unsubscribes again with the old link: the signup is over, and with it what it asked for.
        Assert.Equal(HttpStatusCode.OK, (await _client.PostAsync(oldUnsubscribe, content: null)).StatusCode);

        Assert.Equal("unsubscribed", await database.SubscriberStatusAsync("ida@example.org"));
        Assert.Equal(System.Text.Json.JsonValueKind.Null, (await (await _client.GetAsync(oldExport)).ReadJsonAsync()).GetProperty("pendingSignup").ValueKind);
        Assert.Equal(0, await database.ScalarAsync<long>("SELECT count(renewed_topics) FROM subscribers WHERE email = 'ida@example.org'"));
        Assert.Equal(["topic modelling"], await database.QueryAsync<string>(
            "SELECT t.text FROM topics t JOIN subscribers s ON s.id = t.subscriber_id WHERE s.email = 'ida@example.org'"));
    }

    [Fact]
    public async Task ANewSubscriptionAfterABounceStartsWithNoRefusalsCounted()
    {
        await _client.SignUpAsync("returning@example.org", "topic modelling");
        await _client.GetAsync(TestApp.LinkIn(await _smtp.WaitForMessageToAsync("returning@example.org"), "/subscriptions/confirm"));
        // Bounced by Digest:BounceAfter (3) refusals, with no suppression: the address may subscribe again.
        await database.ExecuteAsync("UPDATE subscribers SET status = 'bounced', permanent_failures = 3 WHERE email = 'returning@example.org'");

        await _client.SignUpAsync("returning@example.org", "topic modelling");
        await _client.GetAsync(TestApp.LinkIn((await WaitForMessagesAsync("returning@example.org", 2))[1], "/subscriptions/confirm"));

        Assert.Equal("active", await database.SubscriberStatusAsync("returning@example.org"));
        // The count went on from 3, and the next single refusal bounced the new subscription.
        Assert.Equal(0, await database.ScalarAsync<int>("SELECT permanent_failures FROM subscribers WHERE email = 'returning@example.org'"));
    }

    [Fact]
    public async Task ASignupOfAnAddressErasedMeanwhileIsANewSignup()
    {
        await _client.SignUpAsync("erased.meanwhile@example.org", "topic modelling");
        await _smtp.WaitForMessageToAsync("erased.meanwhile@example.org");
        // The erasure holds the row as the signup meets it, and deletes it: the signup found no row to lock, and answered 500.
        await using var eraser = await database.DataSource.OpenConnectionAsync();
        await using var erasure = await eraser.BeginTransactionAsync();
        await eraser.ExecuteAsync("SELECT 1 FROM subscribers WHERE email = 'erased.meanwhile@example.org' FOR UPDATE", transaction: erasure);

        var signup = _client.SignUpAsync("erased.meanwhile@example.org", "algebraic topology");
        await Eventually.TrueAsync(async () => await database.ScalarAsync<long>(
            "SELECT count(*) FROM pg_locks WHERE locktype = 'transactionid' AND NOT granted") == 1, "the signup to wait for the row");
        await eraser.ExecuteAsync("DELETE FROM subscribers WHERE email = 'erased.meanwhile@example.org'", transaction: erasure);
        await erasure.CommitAsync();

        Assert.Equal(HttpStatusCode.Accepted, (await signup).StatusCode);
        Assert.Equal("pending", await database.SubscriberStatusAsync("erased.meanwhile@example.org"));
        Assert.Equal(["algebraic topology"], await database.QueryAsync<string>(
            "SELECT t.text FROM topics t JOIN subscribers s ON s.id = t.subscriber_id WHERE s.email = 'erased.meanwhile@example.org'"));
    }

    [Fact]
    public async Task PendingAddressSigningUpAgainGetsAFreshLinkButKeepsItsTopicsAndNoSecondRow()
    {
        await _client.SignUpAsync("alan@example.org", "computability");
        var first = await _smtp.WaitForMessageToAsync("alan@example.org");

        var again = await _client.SignUpAsync("ALAN@Example.ORG", "computability", "morphogenesis");
        Assert.Equal(HttpStatusCode.Accepted, again.StatusCode);
        var second = await WaitForSecondMessageAsync("alan@example.org");

        Assert.Equal(1, await database.ScalarAsync<long>("SELECT count(*) FROM subscribers WHERE lower(email) = 'alan@example.org'"));
        Assert.Equal(HttpStatusCode.NotFound, (await _client.GetAsync(TestApp.LinkIn(first, "/subscriptions/confirm"))).StatusCode);
        Assert.Equal(HttpStatusCode.OK, (await _client.GetAsync(TestApp.LinkIn(second, "/subscriptions/confirm"))).StatusCode);
        Assert.Equal("active", await database.SubscriberStatusAsync("alan@example.org"));
        // Anyone can sign up a pending address again; only its owner's preferences link changes its topics.
        Assert.Equal(["computability"], await database.QueryAsync<string>(
            "SELECT t.text FROM topics t JOIN subscribers s ON s.id = t.subscriber_id WHERE lower(s.email) = 'alan@example.org' ORDER BY position"));
    }

    [Fact]
    public async Task KnownAndUnknownAddressesGetTheSameAnswer()
    {
        await ActiveSubscriberNoticeAsync("known@example.org");

        var known = await _client.SignUpAsync("known@example.org", "graph neural networks");
        var unknown = await _client.SignUpAsync("stranger@example.org", "graph neural networks");

        Assert.Equal(HttpStatusCode.Accepted, known.StatusCode);
        Assert.Equal(unknown.StatusCode, known.StatusCode);
        Assert.Equal(await unknown.Content.ReadAsStringAsync(), await known.Content.ReadAsStringAsync());
        Assert.Equal(unknown.Content.Headers.ContentType, known.Content.Headers.ContentType);
    }

    [Theory]
    [InlineData("/subscriptions/confirm?token=")]
    [InlineData("/unsubscribe")]
    public async Task LinksWithoutATokenSayWhatIsMissing(string url)
    {
        var response = await _client.GetAsync(url);

        Assert.Equal(HttpStatusCode.BadRequest, response.StatusCode);
        var html = await response.Content.ReadAsStringAsync();
        Assert.Contains("no token", html);
        Assert.Contains("href=\"/\"", html);
    }

    [Fact]
    public async Task UnknownTamperedAndWrongPurposeTokensAreRejected()
    {
        var notice = await ActiveSubscriberNoticeAsync("mallory@example.org");
        var unsubscribe = TestApp.LinkIn(notice, "/unsubscribe");
        var token = unsubscribe["/unsubscribe?token=".Length..];
        var tampered = token[..^2] + (token[^2] == 'A' ? "BA" : "AA");

        foreach (var url in new[]
        {
            "/subscriptions/confirm?token=nonsense",
            "/subscriptions/confirm?token=x",
            "/subscriptions/confirm?token=%F0%9F%92%A9%00",
            "/subscriptions/confirm?token=" + token, // an unsubscribe token is not a confirmation token
            "/unsubscribe?token=" + tampered,
            "/unsubscribe?token=" + new string('A', 56),
        })
        {
            var response = await _client.GetAsync(url);
            Assert.Equal(HttpStatusCode.NotFound, response.StatusCode);
            var html = await response.Content.ReadAsStringAsync();
            Assert.Contains("not valid", html);
            Assert.Contains("href=\"/\"", html);
        }

        Assert.Equal(HttpStatusCode.NotFound, (await _client.PostAsync("/unsubscribe?token=" + tampered, content: null)).StatusCode);
        Assert.Equal("active", await database.SubscriberStatusAsync("mallory@example.org"));
    }

    [Fact]
    public async Task TheSignupPageWorksWithoutJavaScript()
    {
        var page = await _client.GetAsync("/");
        Assert.Equal(HttpStatusCode.OK, page.StatusCode);
        Assert.Equal("text/html", page.Content.Headers.ContentType?.MediaType);
        var html = await page.Content.ReadAsStringAsync();
        Assert.Contains("<label for=\"email\">", html);
        Assert.Contains("<label for=\"topics\">", html);
        Assert.Contains("name=\"viewport\"", html);
        Assert.Contains("<form method=\"post\" action=\"/subscriptions\">", html);
        // Its one script only fills the time zone from the browser (issue 15); the form below is posted without it.
        Assert.Equal(html.IndexOf("<script", StringComparison.Ordinal), html.LastIndexOf("<script", StringComparison.Ordinal));
        Assert.Contains(Subscriptions.Web.Pages.TimeZoneScript.Tag, html);

        // Posted as the browser posts the form: one topic per line, HTML pages in answer.
        using var request = new HttpRequestMessage(HttpMethod.Post, "/subscriptions")
        {
            Content = new FormUrlEncodedContent([
                KeyValuePair.Create("email", "form@example.org"),
                KeyValuePair.Create("topics", "depth estimation\r\nrobot <learning>\r\n"),
            ]),
        };
        request.Headers.Accept.ParseAdd("text/html");
        var accepted = await _client.SendAsync(request);
        Assert.Equal(HttpStatusCode.Accepted, accepted.StatusCode);
        Assert.Contains("Check your inbox", await accepted.Content.ReadAsStringAsync());
        Assert.Equal(["depth estimation", "robot <learning>"], await database.QueryAsync<string>(
            "SELECT t.text FROM topics t JOIN subscribers s ON s.id = t.subscriber_id WHERE s.email = 'form@example.org' ORDER BY position"));

        using var invalid = new HttpRequestMessage(HttpMethod.Post, "/subscriptions")
        {
            Content = new FormUrlEncodedContent([
                KeyValuePair.Create("email", "<script>alert(1)</script>"),
                KeyValuePair.Create("topics", "the of"),
            ]),
        };
        invalid.Headers.Accept.ParseAdd("text/html");
        var rejected = await _client.SendAsync(invalid);
        Assert.Equal(HttpStatusCode.BadRequest, rejected.StatusCode);
        var errorPage = await rejected.Content.ReadAsStringAsync();
        Assert.Contains("Please correct", errorPage);
        Assert.DoesNotContain("<script>alert(1)</script>", errorPage);
        Assert.Contains("&lt;script&gt;", errorPage);
    }

    private async Task<MimeKit.MimeMessage> ActiveSubscriberNoticeAsync(string email)
    {
        await _client.SignUpAsync(email, "topic modelling");
        var confirmation = await _smtp.WaitForMessageToAsync(email);
        await _client.GetAsync(TestApp.LinkIn(confirmation, "/subscriptions/confirm"));
        Assert.Equal("active", await database.SubscriberStatusAsync(email));
        await _client.SignUpAsync(email, "topic modelling");
        return await WaitForSecondMessageAsync(email);
    }

    /// <summary>A subscriber who unsubscribed: their old unsubscribe and data-export links.</summary>
    private async Task<(string Unsubscribe, string Export)> FormerSubscriberAsync(string email)
    {
        var notice = await ActiveSubscriberNoticeAsync(email);
        var unsubscribe = TestApp.LinkIn(notice, "/unsubscribe");
        await _client.PostAsync(unsubscribe, content: null);
        return (unsubscribe, TestApp.LinkIn(notice, "/preferences").Replace("/preferences?", "/preferences/export?", StringComparison.Ordinal));
    }

    private async Task<MimeKit.MimeMessage> WaitForSecondMessageAsync(string email) => (await WaitForMessagesAsync(email, 2))[1];

    private async Task<IReadOnlyList<MimeKit.MimeMessage>> WaitForMessagesAsync(string email, int count)
    {
        await Eventually.ValueAsync(() => Task.FromResult(_smtp.MessagesTo(email).Count), received => received >= count,
            $"{count} messages to {email}", received => $"{received} message(s)");
        var messages = _smtp.MessagesTo(email);
        Assert.Equal(count, messages.Count);
        return messages;
    }
}
