using System.Security.Cryptography;
using System.Text;
using Microsoft.Extensions.DependencyInjection;
using MimeKit;
using MimeKit.Cryptography;
using Org.BouncyCastle.Crypto;
using Subscriptions.Digest;
using Subscriptions.Email;
using Subscriptions.Papers;
using Subscriptions.Tests.Infrastructure;

namespace Subscriptions.Tests;

/// <summary>DKIM: every email signed as it goes over the wire, checked with MimeKit's verifier against the published record.</summary>
public sealed class DkimTests(TestDatabase database) : IClassFixture<TestDatabase>, IAsyncLifetime
{
    private static readonly DateOnly Day = new(2026, 11, 25);
    private readonly string _directory = Directory.CreateTempSubdirectory("subscriptions-dkim-").FullName;
    private TestSmtpServer _smtp = null!;

    public async Task InitializeAsync() => _smtp = await TestSmtpServer.StartNewAsync();

    public async Task DisposeAsync()
    {
        await _smtp.DisposeAsync();
        Directory.Delete(_directory, recursive: true);
    }

    [Theory]
    [InlineData("rsa-sha256")]
    [InlineData("ed25519-sha256")]
    public async Task ConfirmationsAndDigestsAreSignedAndVerifyAgainstThePublishedKey(string algorithm)
    {
        using var key = algorithm == "rsa-sha256" ? DkimKey.CreateRsa(2048) : DkimKey.CreateEd25519();
        var keyPath = WriteKey(key);
        await using var app = new TestApp(database, _smtp, settings: DkimSettings(keyPath));
        using var client = app.CreatePlainClient();
        await app.Services.GetRequiredService<PaperStore>().SaveDayAsync(Day, "huggingface",
            [PaperRecord.Create("2611.00001", "Depth Estimation — at Night", "We estimate depth, naïvely. " + string.Concat(Enumerable.Repeat("More detail. ", 40)), ["Ada Lovelace"], null, 12)],
            CancellationToken.None);
        // Each key type's own subscribers: the class shares one database.
        await database.AddSubscriberAsync($"reader-{key.Algorithm}@example.org", "active", maxPapers: null, "depth estimation");

        await client.SignUpAsync($"signed-{key.Algorithm}@example.org", "depth estimation");
        var confirmation = await _smtp.WaitForMessageToAsync($"signed-{key.Algorithm}@example.org");
        await app.Services.GetRequiredService<DigestRunner>().RunAsync(Day, ingestFirst: false, dryRun: false, _ => { }, CancellationToken.None);
        var digest = Assert.Single(_smtp.MessagesTo($"reader-{key.Algorithm}@example.org"));

        var locator = new PublishedKeyLocator(key.DnsRecordValue);
        foreach (var received in new[] { confirmation, digest })
        {
            // What came over the wire, parsed again: the signature covers the message as sent, folding included.
            var wire = _smtp.RawOf(received);
            var message = Parse(wire);
            var signature = Assert.Single(message.Headers, header => header.Id == HeaderId.DkimSignature);
            var tags = Tags(signature.Value);
            Assert.Equal(algorithm, tags["a"]);
            Assert.Equal("relaxed/relaxed", tags["c"]);
            Assert.Equal("subscriptions.test", tags["d"]);
            Assert.Equal("papers2026", tags["s"]);
            var signed = tags["h"].Split(':').Select(name => name.Trim().ToLowerInvariant()).ToList();
            Assert.Empty(new[] { "from", "to", "subject", "date", "message-id", "mime-version", "content-type" }.Except(signed));
            Assert.True(await new DkimVerifier(locator).VerifyAsync(message, signature), "The signature should verify.");

            // Any change to the body or a signed header breaks it.
            var body = Encoding.ASCII.GetString(wire);
            var bodyStart = body.IndexOf("\r\n\r\n", StringComparison.Ordinal);
            var tamperedBody = body[..bodyStart] + body[bodyStart..].Replace("confirm", "c0nfirm", StringComparison.Ordinal).Replace("depth", "dep7h", StringComparison.Ordinal);
            Assert.NotEqual(body, tamperedBody);
            var tampered = Parse(Encoding.ASCII.GetBytes(tamperedBody));
            Assert.False(await new DkimVerifier(locator).VerifyAsync(tampered, tampered.Headers[tampered.Headers.IndexOf(HeaderId.DkimSignature)]),
                "A tampered body must fail verification.");
            var otherSubject = Parse(Encoding.ASCII.GetBytes(body.Replace("Subject: ", "Subject: Re: ", StringComparison.Ordinal)));
            Assert.False(await new DkimVerifier(locator).VerifyAsync(otherSubject, otherSubject.Headers[otherSubject.Headers.IndexOf(HeaderId.DkimSignature)]),
                "A changed subject must fail verification.");
            // Nor may a header be added that the email did not have, or one it had be added again (oversigned).
            foreach (var added in new[] { "Reply-To: someone-else@example.net\r\n", "Subject: Something else\r\n", "List-Unsubscribe: <https://example.net/u>\r\n" })
            {
                var more = Parse(Encoding.ASCII.GetBytes(added + body));
                Assert.False(await new DkimVerifier(locator).VerifyAsync(more, more.Headers[more.Headers.IndexOf(HeaderId.DkimSignature)]),
                    $"An email with \"{added.TrimEnd()}\" added must fail verification.");
            }
        }

        // Encoded once for the signature and sent as encoded: what arrives decodes to the text as written.
        var digestText = Parse(_smtp.RawOf(digest)).TextBody;
        Assert.Contains("Depth Estimation — at Night", digestText);
        Assert.Contains("We estimate depth, naïvely.", digestText);

        // RFC 8058: the one-click unsubscribe headers are covered by the signature.
        var digestTags = Tags(Parse(_smtp.RawOf(digest)).Headers[HeaderId.DkimSignature]!);
        Assert.Empty(new[] { "list-id", "list-unsubscribe", "list-unsubscribe-post" }.Except(digestTags["h"].Split(':').Select(name => name.Trim().ToLowerInvariant())));
    }

    [Fact]
    public async Task WithoutDateAndMessageIdSignedARelayMayReplaceBothAndTheSignatureStillVerifies()
    {
        // As Amazon SES does to every message it accepts: its own Date and Message-ID in place of ours.
        using var key = DkimKey.CreateRsa(2048);
        var settings = DkimSettings(WriteKey(key));
        settings["Dkim:SignDateAndMessageId"] = "false";
        await using var app = new TestApp(database, _smtp, settings: settings);
        using var client = app.CreatePlainClient();

        await client.SignUpAsync("relayed-through-ses@example.org", "depth estimation");
        var wire = Encoding.ASCII.GetString(_smtp.RawOf(await _smtp.WaitForMessageToAsync("relayed-through-ses@example.org")));
        var message = Parse(Encoding.ASCII.GetBytes(wire));
        var signed = Tags(message.Headers[HeaderId.DkimSignature]!)["h"].Split(':');
        var rewritten = Parse(Encoding.ASCII.GetBytes(wire
            .Replace($"Message-Id: <{message.MessageId}>", "Message-ID: <0100019abc-123@email.amazonses.com>", StringComparison.OrdinalIgnoreCase)
            .Replace(message.Headers[HeaderId.Date]!, "Sat, 28 Nov 2026 05:00:00 +0000", StringComparison.Ordinal)));

        Assert.DoesNotContain("date", signed);
        Assert.DoesNotContain("message-id", signed);
        Assert.Contains("from", signed);
        Assert.Equal("0100019abc-123@email.amazonses.com", rewritten.MessageId);
        var locator = new PublishedKeyLocator(key.DnsRecordValue);
        Assert.True(await new DkimVerifier(locator).VerifyAsync(rewritten, rewritten.Headers[rewritten.Headers.IndexOf(HeaderId.DkimSignature)]));
    }

    [Fact]
    public async Task WithoutDkimSettingsNothingIsSigned()
    {
        await using var app = new TestApp(database, _smtp);
        using var client = app.CreatePlainClient();

        await client.SignUpAsync("unsigned@example.org", "robotics");

        var message = await _smtp.WaitForMessageToAsync("unsigned@example.org");
        Assert.DoesNotContain(message.Headers, header => header.Id == HeaderId.DkimSignature);
    }

    public static TheoryData<string, string> BadSettings => new()
    {
        { "partial", "Dkim:Selector is required when any DKIM setting is set" },
        { "missing", "cannot be read" },
        { "malformed", "holds no PEM RSA or Ed25519 private key" },
        { "malformed pkcs8", "holds no PEM RSA or Ed25519 private key" },
        { "short", "holds a 1024-bit RSA key; DKIM keys need at least 2048 bits" },
        { "public", "holds no PEM RSA or Ed25519 private key" },
    };

    [Theory]
    [MemberData(nameof(BadSettings))]
    public async Task ABadKeyOrPartialSettingsStopStartupNamingTheKey(string problem, string expected)
    {
        var keyPath = Path.Combine(_directory, $"{problem.Replace(' ', '-')}.pem");
        using var shortKey = RSA.Create(1024);
        using var publicOnly = RSA.Create(2048);
        switch (problem)
        {
            case "malformed":
                await File.WriteAllTextAsync(keyPath, "-----BEGIN RSA PRIVATE KEY-----\nnot a key\n-----END RSA PRIVATE KEY-----\n");
                break;
            case "malformed pkcs8":
                await File.WriteAllTextAsync(keyPath, $"-----BEGIN PRIVATE KEY-----\n{Convert.ToBase64String(Encoding.ASCII.GetBytes("not a key either"))}\n-----END PRIVATE KEY-----\n");
                break;
            case "short":
                await File.WriteAllTextAsync(keyPath, shortKey.ExportRSAPrivateKeyPem());
                break;
            case "public":
                await File.WriteAllTextAsync(keyPath, publicOnly.ExportSubjectPublicKeyInfoPem());
                break;
        }
        var environment = new Dictionary<string, string>
        {
            ["ConnectionStrings__Postgres"] = database.ConnectionString,
            ["App__TokenSecret"] = "a-secret-for-the-dkim-tests-of-the-service",
            ["Dkim__Domain"] = "subscriptions.test",
        };
        if (problem != "partial")
        {
            environment["Dkim__Selector"] = "papers2026";
            environment["Dkim__PrivateKeyPath"] = keyPath;
        }

        var (exitCode, _, error) = await ServiceBinary.RunAsync(["serve"], environment);

        Assert.Equal(78, exitCode);
        Assert.Contains("Configuration error:", error);
        Assert.Contains(expected, error);
        if (problem == "partial")
        {
            Assert.Contains("Dkim:PrivateKeyPath is required when any DKIM setting is set", error);
        }
        else
        {
            Assert.Contains($"Dkim:PrivateKeyPath {keyPath}", error);
        }
    }

    [Fact]
    public async Task DkimVerbGeneratesAKeyAndPrintsTheRecordOfIt()
    {
        var keyPath = Path.Combine(_directory, "generated.pem");

        var generate = await ServiceBinary.RunAsync(["dkim", "generate", "--key", keyPath, "--selector", "papers2026", "--domain", "subscriptions.test"], NoSettings);
        var record = await ServiceBinary.RunAsync(["dkim", "record", "--key", keyPath, "--Dkim:Selector=papers2026"], new Dictionary<string, string> { ["Dkim__Domain"] = "subscriptions.test" });
        var again = await ServiceBinary.RunAsync(["dkim", "generate", "--key", keyPath, "--selector", "papers2026", "--domain", "subscriptions.test"], NoSettings);
        // As from --key "$KEYFILE" with the variable unset.
        var emptyPath = await ServiceBinary.RunAsync(["dkim", "generate", "--key", "", "--selector", "papers2026", "--domain", "subscriptions.test"], NoSettings);

        Assert.Equal((64, ""), (emptyPath.ExitCode, emptyPath.Output));
        Assert.StartsWith("--key \"\" cannot be written:", emptyPath.Error);
        Assert.DoesNotContain("   at ", emptyPath.Error);
        Assert.Equal(0, generate.ExitCode);
        if (!OperatingSystem.IsWindows())
        {
            Assert.Equal(UnixFileMode.UserRead | UnixFileMode.UserWrite, File.GetUnixFileMode(keyPath));
        }
        using var key = RSA.Create();
        key.ImportFromPem(await File.ReadAllTextAsync(keyPath));
        Assert.Equal(2048, key.KeySize);
        var expected = $"papers2026._domainkey.subscriptions.test TXT \"v=DKIM1; k=rsa; p={Convert.ToBase64String(key.ExportSubjectPublicKeyInfo())}\"";
        Assert.Contains("Wrote a new 2048-bit RSA private key", generate.Output);
        Assert.Contains(expected, generate.Output);

        Assert.Equal(0, record.ExitCode);
        Assert.Equal(expected, record.Output.Trim());

        Assert.Equal(64, again.ExitCode);
        Assert.Contains("already exists; refusing to overwrite", again.Error);
        using var unchanged = RSA.Create();
        unchanged.ImportFromPem(await File.ReadAllTextAsync(keyPath));
        Assert.Equal(key.ExportSubjectPublicKeyInfo(), unchanged.ExportSubjectPublicKeyInfo());
    }

    [Fact]
    public async Task DkimVerbGeneratesAnEd25519KeyInPkcs8WithItsBarePublicKeyInTheRecord()
    {
        var keyPath = Path.Combine(_directory, "ed25519.pem");
        // Made by `openssl genpkey -algorithm ed25519`; its public key, from `openssl pkey -pubout`, is the record's p=.
        var opensslPath = Path.Combine(_directory, "openssl-ed25519.pem");
        await File.WriteAllTextAsync(opensslPath, "-----BEGIN PRIVATE KEY-----\nMC4CAQAwBQYDK2VwBCIEIFmgputJfmT76G/pEMovxHoHMzY2k7brQ7CxZNrXbou/\n-----END PRIVATE KEY-----\n");

        var generate = await ServiceBinary.RunAsync(["dkim", "generate", "--algorithm", "ed25519", "--key", keyPath, "--selector", "papers2026", "--domain", "subscriptions.test"], NoSettings);
        var record = await ServiceBinary.RunAsync(["dkim", "record", "--key", keyPath, "--selector", "papers2026", "--domain", "subscriptions.test"], NoSettings);
        var fromOpenssl = await ServiceBinary.RunAsync(["dkim", "record", "--key", opensslPath, "--selector", "s", "--domain", "example.org"], NoSettings);
        var withBits = await ServiceBinary.RunAsync(["dkim", "generate", "--algorithm", "ed25519", "--bits", "4096", "--key", Path.Combine(_directory, "sized.pem"), "--selector", "s", "--domain", "example.org"], NoSettings);
        var unknown = await ServiceBinary.RunAsync(["dkim", "generate", "--algorithm", "dsa", "--key", Path.Combine(_directory, "dsa.pem"), "--selector", "s", "--domain", "example.org"], NoSettings);

        Assert.Equal(0, generate.ExitCode);
        Assert.Contains("Wrote a new Ed25519 private key", generate.Output);
        // PKCS#8 with the Ed25519 OID (1.3.101.112), read here by BouncyCastle's own reader rather than ours.
        var pem = await File.ReadAllTextAsync(keyPath);
        Assert.StartsWith("-----BEGIN PRIVATE KEY-----", pem, StringComparison.Ordinal);
        var info = Org.BouncyCastle.Asn1.Pkcs.PrivateKeyInfo.GetInstance(Convert.FromBase64String(pem[pem.IndexOf('\n')..pem.IndexOf("-----END", StringComparison.Ordinal)]));
        Assert.Equal("1.3.101.112", info.PrivateKeyAlgorithm.Algorithm.Id);
        var publicKey = ((Org.BouncyCastle.Crypto.Parameters.Ed25519PrivateKeyParameters)Org.BouncyCastle.Security.PrivateKeyFactory.CreateKey(info)).GeneratePublicKey().GetEncoded();
        Assert.Equal(32, publicKey.Length);
        var expected = $"papers2026._domainkey.subscriptions.test TXT \"v=DKIM1; k=ed25519; p={Convert.ToBase64String(publicKey)}\"";
        Assert.Contains(expected, generate.Output);
        Assert.Equal(0, record.ExitCode);
        Assert.Equal(expected, record.Output.Trim());

        Assert.Equal(0, fromOpenssl.ExitCode);
        Assert.Equal("s._domainkey.example.org TXT \"v=DKIM1; k=ed25519; p=35T7W3OMj7f7nCS3+s7y9ljDTAUXtW+JDupk37lGKds=\"", fromOpenssl.Output.Trim());

        AssertRefusedWritingNoKey(withBits, "--bits applies to RSA keys only", "sized.pem");
        AssertRefusedWritingNoKey(unknown, "dsa", "dsa.pem");
    }

    [Fact]
    public async Task DkimVerbRefusesShortKeysAndMissingNames()
    {
        var shortPath = Path.Combine(_directory, "short-verb.pem");
        using (var shortKey = RSA.Create(1024))
        {
            await File.WriteAllTextAsync(shortPath, shortKey.ExportRSAPrivateKeyPem());
        }

        var tooFewBits = await ServiceBinary.RunAsync(["dkim", "generate", "--key", Path.Combine(_directory, "small.pem"), "--bits", "1024", "--selector", "s", "--domain", "example.org"], NoSettings);
        var noSelector = await ServiceBinary.RunAsync(["dkim", "generate", "--key", Path.Combine(_directory, "nameless.pem"), "--domain", "example.org"], NoSettings);
        var shortRecord = await ServiceBinary.RunAsync(["dkim", "record", "--key", shortPath, "--selector", "s", "--domain", "example.org"], NoSettings);
        var shortSetting = await ServiceBinary.RunAsync(["dkim", "record", "--selector", "s", "--domain", "example.org"], new Dictionary<string, string> { ["Dkim__PrivateKeyPath"] = shortPath });

        AssertRefusedWritingNoKey(tooFewBits, "--bits must be between 2048", "small.pem");
        AssertRefusedWritingNoKey(noSelector, "--selector SELECTOR (or the setting Dkim:Selector) is required", "nameless.pem");
        Assert.Equal(64, shortRecord.ExitCode);
        Assert.Contains("1024-bit", shortRecord.Error);
        Assert.Equal(78, shortSetting.ExitCode);
        Assert.Contains("Dkim:PrivateKeyPath", shortSetting.Error);
    }

    private static readonly Dictionary<string, string> NoSettings = [];

    /// <summary>A bad <c>dkim generate</c> exits 64, says why, and writes no key.</summary>
    private void AssertRefusedWritingNoKey((int ExitCode, string Output, string Error) result, string expected, string keyFile)
    {
        Assert.Equal(64, result.ExitCode);
        Assert.Contains(expected, result.Error);
        Assert.False(File.Exists(Path.Combine(_directory, keyFile)));
    }

    private string WriteKey(DkimKey key)
    {
        var path = Path.Combine(_directory, "dkim.pem");
        File.WriteAllText(path, key.ExportPem());
        return path;
    }

    private static Dictionary<string, string?> DkimSettings(string keyPath) => new()
    {
        ["Dkim:Domain"] = "subscriptions.test",
        ["Dkim:Selector"] = "papers2026",
        ["Dkim:PrivateKeyPath"] = keyPath,
    };

    private static MimeMessage Parse(byte[] wire)
    {
        using var stream = new MemoryStream(wire);
        return MimeMessage.Load(stream);
    }

    private static Dictionary<string, string> Tags(string signature) =>
        signature.Split(';', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries)
            .Select(tag => tag.Split('=', 2))
            .ToDictionary(pair => pair[0].Trim(), pair => string.Concat(pair[1].Where(c => !char.IsWhiteSpace(c))));

    /// <summary>Answers every key lookup with the record <c>dkim record</c> would publish, as a DNS resolver would.</summary>
    internal sealed class PublishedKeyLocator(string txtRecord) : DkimPublicKeyLocatorBase
    {
        public override AsymmetricKeyParameter LocatePublicKey(string methods, string domain, string selector, CancellationToken cancellationToken = default) =>
            domain == "subscriptions.test" && selector == "papers2026" ? GetPublicKey(txtRecord) : throw new InvalidOperationException($"No key at {selector}._domainkey.{domain}");

        public override Task<AsymmetricKeyParameter> LocatePublicKeyAsync(string methods, string domain, string selector, CancellationToken cancellationToken = default) =>
            Task.FromResult(LocatePublicKey(methods, domain, selector, cancellationToken));
    }
}
