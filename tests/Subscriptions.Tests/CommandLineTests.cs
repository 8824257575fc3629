using Npgsql;
using Subscriptions.Tests.Infrastructure;

namespace Subscriptions.Tests;

/// <summary>The service binary as an operator runs it: verbs, exit codes and configuration errors.</summary>
public sealed class CommandLineTests(TestDatabase database) : IClassFixture<TestDatabase>
{
    private const string Secret = "a-secret-for-the-command-line-tests-only";

    [Fact]
    public async Task MissingTokenSecretStopsTheServiceNamingTheKey()
    {
        var (exitCode, _, error) = await RunAsync(["serve"], new() { ["ConnectionStrings__Postgres"] = database.ConnectionString });

        Assert.Equal(78, exitCode);
        Assert.Contains("Configuration error", error);
        Assert.Contains("App:TokenSecret is required", error);
    }

    [Fact]
    public async Task EveryBadSettingIsNamedByItsKey()
    {
        var (exitCode, _, error) = await RunAsync(
            ["serve", "--Smtp:Port=99999", "--Mail:From=not an address", "--App:BaseUrl=ftp://example.org", "--App:TokenSecret=short", "--Mail:BounceAddress=bounces+x@example.org",
             "--Papers:Sources=huggingface,file", "--Metrics:Port=8080", "--Papers:Arxiv:RequestInterval=3", "--Papers:Http:Timeout=30",
             "--Mail:UnsubscribeMailto=<leave@example.org>", "--Papers:HuggingFace:BaseUrl=hf-mirror.internal:8080"],
            new() { ["ConnectionStrings__Postgres"] = database.ConnectionString });

        Assert.Equal(78, exitCode);
        Assert.Contains("Smtp:Port must be between 1 and 65535", error);
        Assert.Contains("Mail:From", error);
        Assert.Contains("App:BaseUrl must be an absolute http:// or https:// URL", error);
        Assert.Contains("App:TokenSecret must be at least 32 characters long", error);
        Assert.Contains("Mail:BounceAddress", error);
        Assert.Contains("Mail:UnsubscribeMailto \"<leave@example.org>\" is not a bare address", error);
        Assert.Contains("Papers:File:Path is required when Sources lists file", error);
        Assert.Contains("Metrics:Port (8080) must be a port of its own; the app serves on http://localhost:8080", error);
        Assert.Contains("Papers:Arxiv:RequestInterval must be between 00:00:00 and 00:01:00", error);
        Assert.Contains("Papers:Http:Timeout must be between 00:00:00.0100000 and 00:10:00", error);
        Assert.Contains("Papers:HuggingFace:BaseUrl must be an absolute http:// or https:// URL", error);
        Assert.DoesNotContain("HttpStandardResilienceOptions", error);
    }

    [Fact]
    public async Task AConnectionStringNpgsqlRefusesOnlyWhenBuildingThePoolIsRefusedAtStart()
    {
        // Valid to Npgsql's own defaults (a maximum of 100), not to this service's (20).
        var connectionString = new NpgsqlConnectionStringBuilder(database.ConnectionString) { MinPoolSize = 25 };
        connectionString.Remove("Maximum Pool Size");
        var (exitCode, output, error) = await RunAsync(["migrate", $"--App:TokenSecret={Secret}"],
            new() { ["ConnectionStrings__Postgres"] = connectionString.ConnectionString });

        Assert.Equal(78, exitCode);
        Assert.Contains("ConnectionStrings:Postgres is not a valid connection string:", error);
        Assert.Contains("(Maximum Pool Size is 20 unless it is set)", error);
        Assert.DoesNotContain("   at ", error + output);
    }

    [Fact]
    public async Task AnArxivPauseTheRequestTimeoutWouldCutShortIsRefusedAtStart()
    {
        var (exitCode, _, error) = await RunAsync(["serve", $"--App:TokenSecret={Secret}", "--Papers:Sources=huggingface,arxiv", "--Papers:Arxiv:RequestInterval=00:00:20"],
            new() { ["ConnectionStrings__Postgres"] = database.ConnectionString });

        Assert.Equal(78, exitCode);
        Assert.Contains("Papers:Arxiv:RequestInterval must be at most half of Papers:Http:Timeout (00:00:30)", error);
    }

    [Theory]
    [InlineData("https://papers.example.org/?utm_source=mail")]
    [InlineData("https://papers.example.org/#top")]
    [InlineData("https://papers.example.org/papers")]
    [InlineData("https://user:secret@papers.example.org")]
    public async Task ABaseUrlThatIsNotTheSitesRootIsRefused(string baseUrl)
    {
        var (exitCode, _, error) = await RunAsync(["serve", $"--App:BaseUrl={baseUrl}", $"--App:TokenSecret={Secret}"],
            new() { ["ConnectionStrings__Postgres"] = database.ConnectionString });

        Assert.Equal(78, exitCode);
        Assert.Contains($"App:BaseUrl must be the site's root, e.g. https://papers.example.org, with no path, query, fragment or user; \"{baseUrl}\" has more", error);
    }

    [Fact]
    public async Task AMisspeltSettingIsRefusedNamingTheKeysOfItsSection()
    {
        // Smtp:Hostname used to be ignored: no relay was set, and every email went to the pickup folder.
        var (exitCode, _, error) = await RunAsync(
            ["serve", "--Smtp:Hostname=relay.example.org", $"--App:TokenSecret={Secret}",
             // Keys of the classes that share a section, of nested classes, and read on their own: all accepted.
             "--Digest:MaxPapers=5", "--Digest:Enabled=false", "--App:PreviewsPerMinute=10", "--Bounces:Imap:Folder=INBOX",
             "--Papers:HuggingFace:PageSize=50", "--HostOptions:ShutdownTimeout=00:00:10", "--ConnectionStrings:Other=Host=x"],
            new() { ["ConnectionStrings__Postgres"] = database.ConnectionString, ["MAIL__FORM"] = "papers@example.org" });

        Assert.Equal(78, exitCode);
        Assert.Contains("Smtp:Hostname is not a setting; those of Smtp are BreakDuration, Connections, Host, IdleTimeout,", error);
        Assert.Contains("Mail:FORM is not a setting; those of Mail are BounceAddress, From,", error);
        Assert.Equal(2, error.Split("is not a setting").Length - 1);
    }

    [Theory]
    [InlineData("serve", false)]
    [InlineData("migrate", false)]
    [InlineData("serve", true)]
    [InlineData("migrate", true)]
    public async Task ServeAndTheVerbsReadTheAppsettingsOfTheContentRootTheyAreGiven(string verb, bool inAspNetCoreVariable)
    {
        // By default appsettings.json is read beside the binary; one given elsewhere is read there, as the host documents.
        var root = Directory.CreateTempSubdirectory("subscriptions-content-root-");
        try
        {
            await File.WriteAllTextAsync(Path.Combine(root.FullName, "appsettings.json"), """{ "HostOptions": { "ShutdownTimeout": "00:05:00" } }""");
            var environment = new Dictionary<string, string> { ["ConnectionStrings__Postgres"] = database.ConnectionString };
            string[] arguments = [verb, $"--App:TokenSecret={Secret}"];
            if (inAspNetCoreVariable)
            {
                environment["ASPNETCORE_CONTENTROOT"] = root.FullName;
            }
            else
            {
                arguments = [.. arguments, $"--contentRoot={root.FullName}"];
            }
            var (exitCode, _, error) = await RunAsync(arguments, environment);

            Assert.Equal(78, exitCode);
            Assert.Contains("HostOptions:ShutdownTimeout must be more than 0 and at most", error);
        }
        finally
        {
            root.Delete(recursive: true);
        }
    }

    [Theory]
    [InlineData("unsubscribe@example.org", true)]
    [InlineData("unsubscribe@xn--bcher-kva.de", true)] // a Unicode domain, as the header must carry it
    [InlineData("<unsubscribe@example.org>", false)]
    [InlineData("unsubscribe@example.org>", false)]
    [InlineData("unsubscribe@bücher.de", false)]
    [InlineData("Leave <unsubscribe@example.org>", false)]
    public void AnUnsubscribeMailtoIsExactlyAnAddressInAscii(string mailto, bool accepted)
    {
        var options = new Subscriptions.Email.MailOptions { From = "papers@example.org", UnsubscribeMailto = mailto };

        var problems = options.Validate(new System.ComponentModel.DataAnnotations.ValidationContext(options)).ToList();

        Assert.Equal(accepted, problems.Count == 0);
    }

    [Fact]
    public async Task AClaimShorterThanTheLongestSendIsRefused()
    {
        // 30 s × (3 retries + 1) and waits of up to 1 s × 2³ between them, twice (waiting for a connection another message's
        // attempts hold): 4 min 48 s, longer than the claim.
        var (exitCode, _, error) = await RunAsync(["serve", "--Digest:ClaimTimeout=00:04:00", $"--App:TokenSecret={Secret}"],
            new() { ["ConnectionStrings__Postgres"] = database.ConnectionString });

        Assert.Equal(78, exitCode);
        Assert.Contains("Digest:ClaimTimeout (00:04:00) must be longer than the longest one send can take with these Smtp settings (00:04:48", error);
    }

    [Theory]
    [InlineData("--Smtp:Port=abc", "Smtp:Port")] // a value the binder cannot convert: it was a stack trace (exit 134)
    [InlineData("--HostOptions:ShutdownTimeout=-00:00:05", "HostOptions:ShutdownTimeout must be more than 0 and at most 00:00:30")]
    [InlineData("--HostOptions:ShutdownTimeout=00:05:00", "HostOptions:ShutdownTimeout must be more than 0 and at most 00:00:30")]
    public async Task AValueThatCannotBeUsedIsNamedWithoutAStackTrace(string setting, string expected)
    {
        var (exitCode, _, error) = await RunAsync(["serve", setting, $"--App:TokenSecret={Secret}"],
            new() { ["ConnectionStrings__Postgres"] = database.ConnectionString });

        Assert.Equal(78, exitCode);
        Assert.Contains("Configuration error", error);
        Assert.Contains(expected, error);
        Assert.DoesNotContain("   at ", error);
    }

    [Theory]
    [InlineData("migrate")]
    [InlineData("serve")]
    [InlineData("suppressions", "list")]
    public async Task ADatabaseThatCannotBeReachedIsSaidSoWithoutAStackTrace(params string[] verb)
    {
        var (exitCode, _, error) = await RunAsync(verb,
            new() { ["ConnectionStrings__Postgres"] = "Host=127.0.0.1;Port=1;Timeout=2;Username=nobody", ["App__TokenSecret"] = Secret });

        Assert.Equal(69, exitCode);
        Assert.Contains("Database error: Failed to connect to 127.0.0.1:1", error);
        Assert.DoesNotContain("   at ", error);
    }

    [Fact]
    public async Task ADatabaseWithNoConnectionLeftIsSaidSoWithoutAStackTrace()
    {
        await database.ExecuteAsync("DROP ROLE IF EXISTS limited; CREATE ROLE limited LOGIN CONNECTION LIMIT 0");
        var limited = new Npgsql.NpgsqlConnectionStringBuilder(database.ConnectionString) { Username = "limited" }.ConnectionString;

        var (exitCode, _, error) = await RunAsync(["migrate"], new() { ["ConnectionStrings__Postgres"] = limited, ["App__TokenSecret"] = Secret });

        Assert.Equal(69, exitCode);
        Assert.Contains("Database error: 53300", error);
        Assert.DoesNotContain("   at ", error);
    }

    [Fact]
    public async Task AnAddressServeCannotListenOnEndsWithItsErrorNotAnAbort()
    {
        var (exitCode, _, error) = await RunAsync(["serve", "--urls=localhost:8080", $"--App:TokenSecret={Secret}"],
            new() { ["ConnectionStrings__Postgres"] = database.ConnectionString });

        Assert.Equal(70, exitCode);
        Assert.Contains("Unexpected error: ", error);
        Assert.Contains("localhost:8080", error);
    }

    [Fact]
    public async Task MissingConnectionStringIsNamed()
    {
        var (exitCode, _, error) = await RunAsync(["migrate"], new() { ["App__TokenSecret"] = Secret });

        Assert.Equal(78, exitCode);
        Assert.Contains("ConnectionStrings:Postgres is required", error);
    }

    [Fact]
    public async Task MigrateAppliesPendingScriptsAndThenHasNothingToDo()
    {
        var connectionString = await PostgresServer.CreateDatabaseAsync("cli", migrated: false);
        try
        {
            var first = await RunAsync(["migrate"], new() { ["ConnectionStrings__Postgres"] = connectionString });
            Assert.Equal(0, first.ExitCode);
            Assert.Contains("0001_subscribers.sql", first.Output);

            var second = await RunAsync(["migrate"], new() { ["ConnectionStrings__Postgres"] = connectionString });
            Assert.Equal(0, second.ExitCode);
            Assert.Contains("nothing to apply", second.Output);
        }
        finally
        {
            await PostgresServer.DropDatabaseAsync(connectionString);
        }
    }

    [Fact]
    public async Task IngestReadsAFileAndPrintsWhatItStored()
    {
        var file = Path.Combine(AppContext.BaseDirectory, "Payloads", "huggingface-daily-papers.json");
        var environment = new Dictionary<string, string> { ["ConnectionStrings__Postgres"] = database.ConnectionString };

        var first = await RunAsync(["ingest", "--date", "2026-11-23", "--file", file], environment);
        var second = await RunAsync(["ingest", "--date=2026-11-23", "--source", "file", "--file", file], environment);

        Assert.Equal(0, first.ExitCode);
        Assert.Contains("Ingesting the papers of 2026-11-23", first.Output);
        Assert.Matches(@"file\s+fetched\s+3\s+new\s+3\s+updated\s+0\s+unchanged\s+0\s+skipped\s+0", first.Output);
        Assert.Equal(0, second.ExitCode);
        Assert.Matches(@"file\s+fetched\s+3\s+new\s+0\s+updated\s+0\s+unchanged\s+3", second.Output);
    }

    [Fact]
    public async Task IngestReportsAFailedSourceAndExitsNonZero()
    {
        var environment = new Dictionary<string, string> { ["ConnectionStrings__Postgres"] = database.ConnectionString };

        var missing = await RunAsync(["ingest", "--date", "2026-11-23", "--file", "/nonexistent/papers.json"], environment);
        var badDate = await RunAsync(["ingest", "--date", "23/11/2026"], environment);

        Assert.Equal(1, missing.ExitCode);
        Assert.Contains("file         FAILED: /nonexistent/papers.json does not exist", missing.Output);
        Assert.Equal(64, badDate.ExitCode);
        Assert.Contains("expected a day as YYYY-MM-DD", badDate.Error);
    }

    [Fact]
    public async Task ADryRunOfAnHourlySlotIsRefusedRatherThanRenderingEveryonesEmail()
    {
        var (exitCode, _, error) = await RunAsync(["digest", "--at", "2026-11-25T07:00:00Z", "--dry-run", "--no-ingest"],
            new() { ["ConnectionStrings__Postgres"] = database.ConnectionString, ["App__TokenSecret"] = Secret });

        Assert.Equal(64, exitCode);
        Assert.Contains("--dry-run renders a day's digest for every active subscriber (--date), not an hourly slot's (--at)", error);
    }

    [Fact]
    public async Task ASlotOlderThanItsDeliveriesAreKeptIsNotPlannedAgain()
    {
        await database.ExecuteAsync("""
            INSERT INTO subscribers (email, status, subscription_key, created_at, updated_at)
            VALUES ('long-ago@example.org', 'active', '\x00112233445566778899aabbccddeeff', now(), now())
            """);
        var environment = new Dictionary<string, string> { ["ConnectionStrings__Postgres"] = database.ConnectionString, ["App__TokenSecret"] = Secret };

        var byDate = await RunAsync(["digest", "--date", "2024-01-10", "--no-ingest"], environment);
        var bySlot = await RunAsync(["digest", "--at", "2024-01-10T07:00:00Z", "--no-ingest", "--Retention:Deliveries=400.00:00:00"], environment);

        Assert.Equal((64, 64), (byDate.ExitCode, bySlot.ExitCode));
        Assert.Contains("The slot of 2024-01-10 07:00Z is older than Retention:Deliveries (365 days): its deliveries may be deleted", byDate.Error);
        Assert.Contains("older than Retention:Deliveries (400 days)", bySlot.Error);
        Assert.Equal(0, await database.ScalarAsync<long>("SELECT count(*) FROM digest_slots WHERE slot < '2025-01-01'"));
    }

    [Fact]
    public async Task AnUnknownVerbPrintsUsage()
    {
        var (exitCode, _, error) = await RunAsync(["frobnicate"], []);

        Assert.Equal(64, exitCode);
        Assert.Contains("Usage:", error);
        Assert.Contains("migrate", error);
    }

    [Theory]
    [InlineData("--dryrun")] // for --dry-run: it sent for real
    [InlineData("--day", "2026-11-25")] // for --date: it ran today
    [InlineData("2026-11-25")]
    [InlineData("--Smtp:Host")] // a setting with no value
    [InlineData("-Smtp:Host=smtp.example.org")] // configuration takes one dash only through switch mappings: it threw
    public async Task AnArgumentThatIsNeitherAnOptionNorASettingIsRefusedAndNothingIsSent(params string[] mistaken)
    {
        var environment = new Dictionary<string, string>
        {
            ["ConnectionStrings__Postgres"] = database.ConnectionString,
            ["App__TokenSecret"] = "a-secret-for-the-command-line-test-of-mistakes",
        };

        var (exitCode, _, error) = await RunAsync(["digest", "--no-ingest", .. mistaken], environment);

        Assert.Equal(64, exitCode);
        Assert.Contains($"\"{mistaken[0]}\" is not an option of digest, nor a setting", error);
        Assert.Contains("Usage:", error);
        Assert.Equal(0, await database.ScalarAsync<long>("SELECT count(*) FROM digest_slots"));
    }

    [Fact]
    public async Task SettingsInEveryFormConfigurationTakesAreAccepted()
    {
        var (exitCode, _, error) = await RunAsync(
            ["migrate", "--Smtp:Host", "smtp.example.org", "/Digest:BatchSize=10", "--urls", "http://127.0.0.1:0", "--Logging:LogLevel:Default=Warning",
             "--OTEL_SERVICE_NAME=subscriptions", "--AllowedHosts=*", "--App:TokenSecret=" + Secret],
            new() { ["ConnectionStrings__Postgres"] = database.ConnectionString });

        Assert.True(exitCode == 0, error);
    }

    private static Task<(int ExitCode, string Output, string Error)> RunAsync(string[] arguments, Dictionary<string, string> environment) =>
        ServiceBinary.RunAsync(arguments, environment);
}
