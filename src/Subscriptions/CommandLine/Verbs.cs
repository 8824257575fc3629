using System.CommandLine;
using System.Globalization;
using Microsoft.Extensions.Options;
using Npgsql;
using Subscriptions.Database;

namespace Subscriptions.CommandLine;

/// <summary>
/// <c>Subscriptions [VERB] [options] [--Key=Value ...]</c>: serve (the default), migrate, ingest, digest, suppressions, dkim, embed.
/// What a verb does not know as one of its options is a setting and goes to configuration.
/// </summary>
internal static class Verbs
{
    public const int Done = 0;
    public const int SourceFailed = 1;
    public const int Interrupted = 130;
    public const int BadArguments = 64; // sysexits.h: EX_USAGE
    public const int BadSchema = 65; // sysexits.h: EX_DATAERR
    public const int DatabaseUnavailable = 69; // sysexits.h: EX_UNAVAILABLE
    public const int Failed = 70; // sysexits.h: EX_SOFTWARE
    public const int BadConfiguration = 78; // sysexits.h: EX_CONFIG

    public static async Task<int> RunAsync(string[] args, Func<string[], Task<int>> serve)
    {
        var root = new RootCommand(
            "Emails each subscriber the day's trending research papers on their topics. Settings are --Key=Value arguments, " +
            "environment variables (Smtp__Host=...) or appsettings.json; the README lists every key.");
        var serveCommand = new Command("serve", "Serve the web endpoints, the daily trigger and the background senders (the default).");
        serveCommand.SetAction(result => serve(Settings(result)));
        root.SetAction(result => serve(Settings(result)));
        root.Add(serveCommand);
        root.Add(MigrateCommand.Create());
        root.Add(IngestCommand.Create());
        root.Add(DigestCommand.Create());
        root.Add(SuppressionsCommand.Create());
        root.Add(DkimCommand.Create());
        root.Add(EmbedCommand.Create());
        root.Add(AdminCommand.Create());
        foreach (var command in AndDescendants(root))
        {
            command.TreatUnmatchedTokensAsErrors = false;
        }

        var parsed = root.Parse(args);
        var errors = parsed.Errors.Select(error => error.Message).ToList();
        if (parsed.CommandResult.Command == root && args is [var first, ..] && !first.StartsWith('-'))
        {
            errors.Add($"\"{first}\" is not a verb.");
        }
        else
        {
            errors.AddRange(NotSettings(parsed.UnmatchedTokens).Select(token =>
                $"\"{token}\" is not an option of {parsed.CommandResult.Command.Name}, nor a setting (--Section:Key=Value)."));
        }
        if (errors.Count > 0)
        {
            foreach (var error in errors)
            {
                Console.Error.WriteLine(error);
            }
            Console.Error.WriteLine();
            // The usage of the verb that was meant (or of them all), as --help prints it, to standard error.
            var verb = parsed.CommandResult.Command;
            root.Parse(verb == root ? ["--help"] : [verb.Name, "--help"]).Invoke(new InvocationConfiguration { Output = Console.Error });
            return BadArguments;
        }

        try
        {
            // No default exception handler (a failure must reach the catch below, or the test host that
            // intercepts the web host), and no termination timeout: serve stops on SIGTERM as the host decides.
            return await parsed.InvokeAsync(new InvocationConfiguration { EnableDefaultExceptionHandler = false, ProcessTerminationTimeout = null });
        }
        catch (Exception e) when (Unwrap<StoppedWhileMigratingException>(e) is { } stopped)
        {
            // serve exits 0 on SIGTERM at any other time too.
            Console.Error.WriteLine(stopped.Message);
            return parsed.CommandResult.Command == root || parsed.CommandResult.Command == serveCommand ? Done : Interrupted;
        }
        catch (Exception e) when (Unwrap<SchemaMismatchException>(e) is { } mismatch)
        {
            Console.Error.WriteLine($"Database schema error: {mismatch.Message}");
            return BadSchema;
        }
        catch (Exception e) when (ConfigurationFailures(e) is { Count: > 0 } failures)
        {
            Console.Error.WriteLine("Configuration error:");
            foreach (var failure in failures)
            {
                Console.Error.WriteLine($"  {failure}");
            }
            return BadConfiguration;
        }
        catch (Exception e) when (Unwrap<NpgsqlException>(e) is { } database && CannotBeReached(database))
        {
            // Unreachable, refused, a wrong password: what the operator must fix, not a stack trace.
            Console.Error.WriteLine($"Database error: {database.Message}{(database.InnerException is { } inner ? $" ({inner.Message})" : "")}");
            return DatabaseUnavailable;
        }
        catch (Exception e) when (e is not HostAbortedException)
        {
            // Anything else is a fault to report with its stack trace, but as an exit code of its own: escaping Main, it
            // aborted the process (134, a core dump under systemd). (The test host stops the entry point with
            // HostAbortedException once it has the app: that one must go on.)
            Console.Error.WriteLine($"Unexpected error: {e}");
            return Failed;
        }
    }

    /// <summary>
    /// Not reached, or the login refused: no connection (any error but the server's own), a connection error (SQLSTATE class
    /// 08), a wrong password or role (28xxx), no such database (3D000), no connection left (53300, the server's or the role's
    /// limit), the server starting, shutting down or restarted under it (class 57 but for a cancelled statement). A
    /// statement's error (a script that fails, say) is not this, and keeps its stack trace.
    /// </summary>
    private static bool CannotBeReached(NpgsqlException database) =>
        database is not PostgresException server || server.SqlState.StartsWith("08", StringComparison.Ordinal)
        || server.SqlState.StartsWith("28", StringComparison.Ordinal) || server.SqlState is "3D000" or "53300"
        || (server.SqlState.StartsWith("57", StringComparison.Ordinal) && server.SqlState != PostgresErrorCodes.QueryCanceled);

    private static IEnumerable<Command> AndDescendants(Command command) => command.Subcommands.SelectMany(AndDescendants).Prepend(command);

    /// <summary>The arguments no verb option took: <c>--Key=Value</c> settings for configuration.</summary>
    public static string[] Settings(ParseResult result) => [.. result.UnmatchedTokens];

    // The settings that have no section: the host's and ASP.NET Core's own (ASPNETCORE_… in the environment).
    private static readonly string[] SettingsWithoutSection =
    [
        "urls", "http_ports", "https_ports", "environment", "contentRoot", "applicationName", "webroot", "allowedHosts", "detailedErrors",
        "shutdownTimeoutSeconds", "hostingStartupAssemblies", "hostingStartupExcludeAssemblies",
        "preventHostingStartup", "suppressStatusMessages", "captureStartupErrors",
    ];

    /// <summary>
    /// The arguments no verb option took that are not settings either (<c>--Section:Key=Value</c>, <c>--Section:Key Value</c>,
    /// one of <see cref="SettingsWithoutSection"/>, or a name given an empty value): configuration would take a misspelt option (<c>digest --dryrun</c>)
    /// as a setting nothing reads, or drop it, and the verb would go on without it: sending for real, say.
    /// </summary>
    private static IEnumerable<string> NotSettings(IReadOnlyList<string> tokens)
    {
        for (var i = 0; i < tokens.Count; i++)
        {
            var token = tokens[i];
            if (token.StartsWith('-') && !token.StartsWith("--", StringComparison.Ordinal))
            {
                yield return token; // configuration takes -Key only through switch mappings, which the service has none of
                continue;
            }
            var key = token.StartsWith("--", StringComparison.Ordinal) ? token[2..] : token.StartsWith('/') ? token[1..] : token;
            var equals = key.IndexOf('=', StringComparison.Ordinal);
            var name = equals < 0 ? key : key[..equals];
            // "--Smtp=": a section's own (empty) value, as a host that hands its whole configuration on writes it.
            var isSetting = name.Contains(':', StringComparison.Ordinal) || SettingsWithoutSection.Contains(name, StringComparer.OrdinalIgnoreCase)
                || IsEnvironmentStyle(name) || (equals > 0 && equals == key.Length - 1);
            if (!isSetting || (equals < 0 && (key == token || ++i >= tokens.Count)))
            {
                yield return token; // not a setting's name, a bare name, or a name with no value after it
            }
        }
    }

    // OTEL_EXPORTER_OTLP_ENDPOINT and the like, read by the libraries as they read the environment.
    private static bool IsEnvironmentStyle(string name) =>
        name.Length > 0 && name.Contains('_', StringComparison.Ordinal) && name.All(c => char.IsAsciiLetterUpper(c) || char.IsAsciiDigit(c) || c == '_');

    /// <summary>A <c>--date YYYY-MM-DD</c> option.</summary>
    public static Option<DateOnly?> DateOption(string description) => new("--date")
    {
        Description = description,
        HelpName = "YYYY-MM-DD",
        CustomParser = result =>
        {
            var text = result.Tokens.Count == 1 ? result.Tokens[0].Value : "";
            if (DateOnly.TryParseExact(text, "yyyy-MM-dd", CultureInfo.InvariantCulture, DateTimeStyles.None, out var day))
            {
                return day;
            }
            result.AddError($"--date {text}: expected a day as YYYY-MM-DD");
            return null;
        },
    };

    private static T? Unwrap<T>(Exception exception) where T : Exception => exception switch
    {
        T found => found,
        AggregateException e => e.InnerExceptions.Select(Unwrap<T>).FirstOrDefault(found => found is not null),
        _ => exception.InnerException is { } inner ? Unwrap<T>(inner) : null,
    };

    private static List<string> ConfigurationFailures(Exception exception) => exception switch
    {
        OptionsValidationException e => [.. e.Failures],
        AggregateException e => [.. e.InnerExceptions.SelectMany(ConfigurationFailures)],
        // A value the binder cannot convert ("Failed to convert configuration value 'abc' at 'Smtp:Port' to type 'System.Int32'").
        InvalidOperationException e when e.TargetSite?.DeclaringType == typeof(ConfigurationBinder) => [e.Message],
        _ => exception.InnerException is { } inner ? ConfigurationFailures(inner) : [],
    };
}
