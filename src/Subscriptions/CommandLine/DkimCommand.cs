using System.CommandLine;
using Subscriptions.Email;

namespace Subscriptions.CommandLine;

/// <summary><c>dkim generate</c> makes a key and prints its DNS record; <c>dkim record</c> prints the record of a key.</summary>
internal static class DkimCommand
{
    private const string Rsa = "rsa";
    private const string Ed25519 = "ed25519";

    public static Command Create()
    {
        var command = new Command("dkim", "Generate a DKIM key, or print the DNS TXT record that publishes one.")
        {
            CreateGenerate(),
            CreateRecord(),
        };
        foreach (var verb in command.Subcommands)
        {
            verb.TreatUnmatchedTokensAsErrors = false;
        }
        return command;
    }

    private static Command CreateGenerate()
    {
        var key = new Option<string>("--key") { Description = "Where to write the private key (PEM); an existing file is never overwritten.", HelpName = "PATH", Required = true };
        var algorithm = new Option<string>("--algorithm")
        {
            Description = "rsa (rsa-sha256, which every receiver verifies) or ed25519 (ed25519-sha256, RFC 8463: ~8 times cheaper to sign, not yet verified everywhere).",
            DefaultValueFactory = _ => Rsa,
        };
        algorithm.AcceptOnlyFromAmong(Rsa, Ed25519);
        var bits = new Option<int>("--bits") { Description = $"RSA key size in bits (at least {DkimKey.MinimumRsaBits}).", DefaultValueFactory = _ => DkimKey.MinimumRsaBits };
        bits.Validators.Add(result =>
        {
            if (result.GetValueOrDefault<int>() is < DkimKey.MinimumRsaBits or > 16384)
            {
                result.AddError($"--bits must be between {DkimKey.MinimumRsaBits} and 16384");
            }
        });
        var (selector, domain) = NameOptions();
        var command = new Command("generate", "Write a new private key (PEM, mode 0600) and print the DNS TXT record to publish for it.")
        {
            key, algorithm, bits, selector, domain,
        };
        command.Validators.Add(result =>
        {
            // The token, not the value: reading a value that failed its own check (--algorithm dsa) throws.
            if (result.GetResult(algorithm)?.Tokens is [{ Value: Ed25519 }] && result.GetResult(bits) is { Implicit: false })
            {
                result.AddError("--bits applies to RSA keys only; an Ed25519 key is always 256 bits");
            }
        });
        command.SetAction(result =>
        {
            if (Names(result, selector, domain) is not var (selectorName, domainName))
            {
                return Verbs.BadArguments;
            }
            var path = result.GetValue(key)!;
            using var dkimKey = result.GetValue(algorithm) == Ed25519 ? DkimKey.CreateEd25519() : DkimKey.CreateRsa(result.GetValue(bits));
            // CreateNew: refuses an existing file even if it appears between a check and the write.
            var create = new FileStreamOptions { Mode = FileMode.CreateNew, Access = FileAccess.Write };
            if (!OperatingSystem.IsWindows())
            {
                create.UnixCreateMode = UnixFileMode.UserRead | UnixFileMode.UserWrite;
            }
            try
            {
                using var file = new FileStream(path, create);
                using var writer = new StreamWriter(file);
                writer.Write(dkimKey.ExportPem());
                writer.Write('\n');
            }
            catch (IOException) when (File.Exists(path))
            {
                Console.Error.WriteLine($"--key {path} already exists; refusing to overwrite a key (remove it first, or choose another path).");
                return Verbs.BadArguments;
            }
            catch (Exception e) when (e is IOException or UnauthorizedAccessException or ArgumentException)
            {
                Console.Error.WriteLine($"--key \"{path}\" cannot be written: {e.Message}");
                return Verbs.BadArguments;
            }
            Console.WriteLine($"Wrote a new {dkimKey.Description} private key to {path} (readable by its owner only).");
            Console.WriteLine($"Publish this DNS record, then set Dkim:Domain={domainName}, Dkim:Selector={selectorName} and Dkim:PrivateKeyPath={Path.GetFullPath(path)}:");
            Console.WriteLine(dkimKey.DnsRecord(selectorName, domainName));
            return Verbs.Done;
        });
        return command;
    }

    private static Command CreateRecord()
    {
        var key = new Option<string>("--key") { Description = "The private key (PEM) whose record to print (default: Dkim:PrivateKeyPath).", HelpName = "PATH" };
        var (selector, domain) = NameOptions();
        var command = new Command("record", "Print the DNS TXT record that publishes an existing key.")
        {
            key, selector, domain,
        };
        command.SetAction(result =>
        {
            if (Names(result, selector, domain) is not var (selectorName, domainName))
            {
                return Verbs.BadArguments;
            }
            var fromOption = result.GetValue(key);
            var path = fromOption ?? Settings(result)[$"{DkimOptions.Section}:{nameof(DkimOptions.PrivateKeyPath)}"];
            if (string.IsNullOrWhiteSpace(path))
            {
                Console.Error.WriteLine("--key PATH (or the setting Dkim:PrivateKeyPath) is required.");
                return Verbs.BadArguments;
            }
            using var dkimKey = DkimKey.Load(path, out var problem);
            if (dkimKey is null)
            {
                // A bad --key is a bad argument; a bad Dkim:PrivateKeyPath is a bad setting.
                Console.Error.WriteLine(fromOption is null ? $"Configuration error:\n  Dkim:PrivateKeyPath {problem}" : $"--key {problem}");
                return fromOption is null ? Verbs.BadConfiguration : Verbs.BadArguments;
            }
            Console.WriteLine(dkimKey.DnsRecord(selectorName, domainName));
            return Verbs.Done;
        });
        return command;
    }

    private static (Option<string> Selector, Option<string> Domain) NameOptions() => (
        new Option<string>("--selector") { Description = "The selector (default: Dkim:Selector).", HelpName = "SELECTOR" },
        new Option<string>("--domain") { Description = "The signing domain (default: Dkim:Domain).", HelpName = "DOMAIN" });

    /// <summary>The selector and domain, from the options or else the Dkim:* settings; null (and why, printed) when one is missing.</summary>
    private static (string Selector, string Domain)? Names(ParseResult result, Option<string> selectorOption, Option<string> domainOption)
    {
        var settings = Settings(result);
        var selector = result.GetValue(selectorOption) ?? settings[$"{DkimOptions.Section}:{nameof(DkimOptions.Selector)}"];
        var domain = result.GetValue(domainOption) ?? settings[$"{DkimOptions.Section}:{nameof(DkimOptions.Domain)}"];
        var missing = new List<string>();
        if (string.IsNullOrWhiteSpace(selector) || Uri.CheckHostName(selector) != UriHostNameType.Dns)
        {
            missing.Add("--selector SELECTOR (or the setting Dkim:Selector) is required: a DNS label such as papers2026");
        }
        if (string.IsNullOrWhiteSpace(domain) || Uri.CheckHostName(domain) != UriHostNameType.Dns)
        {
            missing.Add("--domain DOMAIN (or the setting Dkim:Domain) is required: the domain of Mail:From, such as example.org");
        }
        foreach (var problem in missing)
        {
            Console.Error.WriteLine(problem);
        }
        return missing.Count == 0 ? (selector!, domain!) : null;
    }

    /// <summary>The service's configuration (appsettings.json, environment, <c>--Key=Value</c>), without starting anything.</summary>
    private static IConfiguration Settings(ParseResult result) => CommandHost.CreateBuilder(Verbs.Settings(result)).Configuration;
}
