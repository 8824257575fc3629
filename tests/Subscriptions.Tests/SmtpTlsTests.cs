using System.Net;
using System.Security.Cryptography;
using System.Security.Cryptography.X509Certificates;
using Microsoft.Extensions.DependencyInjection;
using MimeKit;
using Subscriptions.Email;
using Subscriptions.Tests.Infrastructure;

namespace Subscriptions.Tests;

/// <summary>Sending over TLS (STARTTLS and TLS from the start) to a relay whose certificate the operator trusts.</summary>
public sealed class SmtpTlsTests(TestDatabase database) : IClassFixture<TestDatabase>, IDisposable
{
    private readonly DirectoryInfo _directory = Directory.CreateTempSubdirectory("subscriptions-smtp-tls-");

    [Theory]
    [InlineData("StartTls", false)]
    [InlineData("SslOnConnect", true)]
    public async Task AMessageLargerThanTheSendBufferArrivesWholeOverTlsToATrustedRelay(string security, bool implicitTls)
    {
        using var certificate = SelfSignedFor(IPAddress.Loopback);
        await using var smtp = await TestSmtpServer.StartNewAsync(certificate: certificate, implicitTls: implicitTls);
        await using var app = new TestApp(database, smtp, settings: Settings(security, TrustedPem(certificate)));
        // Over 64 KB (the buffer between MailKit and the socket), in lines with leading dots that SMTP must stuff.
        var text = string.Join("\n", Enumerable.Range(0, 3_000).Select(line => $".line {line:D4} of a long digest, dots and all"));
        var message = PlainMessages.To("reader@example.org", "over tls");
        message.Body = new TextPart("plain") { Text = text };

        await app.Services.GetRequiredService<IMailSender>().SendAsync(message, CancellationToken.None);

        var received = Assert.Single(smtp.MessagesTo("reader@example.org"));
        Assert.True(smtp.CameOverTls(received));
        Assert.Equal(text, Assert.IsType<TextPart>(received.Body).Text.TrimEnd('\r', '\n'));
    }

    [Fact]
    public async Task ARelayWhoseCertificateAPrivateAuthorityIssuedIsTrustedThroughThatAuthority()
    {
        using var authorityKey = RSA.Create(2048);
        var authorityRequest = new CertificateRequest("CN=Private Mail CA", authorityKey, HashAlgorithmName.SHA256, RSASignaturePadding.Pkcs1);
        authorityRequest.CertificateExtensions.Add(new X509BasicConstraintsExtension(certificateAuthority: true, hasPathLengthConstraint: false, 0, critical: true));
        authorityRequest.CertificateExtensions.Add(new X509KeyUsageExtension(X509KeyUsageFlags.KeyCertSign, critical: true));
        using var authority = authorityRequest.CreateSelfSigned(DateTimeOffset.UtcNow.AddMinutes(-5), DateTimeOffset.UtcNow.AddDays(2));
        using var relayKey = RSA.Create(2048);
        var relayRequest = RequestFor(IPAddress.Loopback, relayKey);
        using var issued = relayRequest.Create(authority, DateTimeOffset.UtcNow.AddMinutes(-5), DateTimeOffset.UtcNow.AddDays(1), [1, 2, 3, 4]);
        using var relay = WithPrivateKey(issued.CopyWithPrivateKey(relayKey));
        await using var smtp = await TestSmtpServer.StartNewAsync(certificate: relay, implicitTls: true);
        await using var app = new TestApp(database, smtp, settings: Settings("SslOnConnect", TrustedPem(authority)));

        await app.Services.GetRequiredService<IMailSender>().SendAsync(PlainMessages.To("reader@example.org", "private ca"), CancellationToken.None);

        Assert.True(smtp.CameOverTls(Assert.Single(smtp.MessagesTo("reader@example.org"))));
    }

    [Theory]
    [InlineData("StartTls", false)]
    [InlineData("SslOnConnect", true)]
    public async Task ARelayWhoseCertificateIsNotTrustedGetsNothing(string security, bool implicitTls)
    {
        using var certificate = SelfSignedFor(IPAddress.Loopback);
        using var another = SelfSignedFor(IPAddress.Loopback);
        await using var smtp = await TestSmtpServer.StartNewAsync(certificate: certificate, implicitTls: implicitTls);
        await using var app = new TestApp(database, smtp, settings: Settings(security, TrustedPem(another)));

        var send = app.Services.GetRequiredService<IMailSender>().SendAsync(PlainMessages.To("reader@example.org", "untrusted"), CancellationToken.None);

        await Assert.ThrowsAsync<MailKit.Security.SslHandshakeException>(() => send);
        Assert.Empty(smtp.Received);
    }

    [Fact]
    public async Task ACertificateForAnotherNameIsRefusedEvenWhenItIsTheTrustedOne()
    {
        using var certificate = SelfSignedFor(IPAddress.Parse("192.0.2.1"));
        await using var smtp = await TestSmtpServer.StartNewAsync(certificate: certificate, implicitTls: true);
        await using var app = new TestApp(database, smtp, settings: Settings("SslOnConnect", TrustedPem(certificate)));

        var send = app.Services.GetRequiredService<IMailSender>().SendAsync(PlainMessages.To("reader@example.org", "wrong name"), CancellationToken.None);

        await Assert.ThrowsAsync<MailKit.Security.SslHandshakeException>(() => send);
        Assert.Empty(smtp.Received);
    }

    [Theory]
    [InlineData("missing")]
    [InlineData("not a certificate")]
    public async Task AnUnreadableTrustedCertificateStopsTheServiceAtStartUp(string problem)
    {
        var path = Path.Combine(_directory.FullName, "relay.pem");
        if (problem != "missing")
        {
            await File.WriteAllTextAsync(path, "-----BEGIN CERTIFICATE-----\nnot a certificate\n-----END CERTIFICATE-----\n");
        }

        var (exitCode, _, error) = await ServiceBinary.RunAsync(["serve"], new Dictionary<string, string>
        {
            ["ConnectionStrings__Postgres"] = database.ConnectionString,
            ["App__TokenSecret"] = "a-secret-for-the-smtp-tls-tests-of-the-service",
            ["Smtp__Host"] = "127.0.0.1",
            ["Smtp__TrustedCertificatePath"] = path,
        });

        Assert.Equal(78, exitCode);
        Assert.Contains($"Smtp:TrustedCertificatePath {path} holds no readable PEM certificate", error);
    }

    public void Dispose() => _directory.Delete(recursive: true);

    private static Dictionary<string, string?> Settings(string security, string trustedCertificatePath) => new()
    {
        ["Smtp:Security"] = security,
        ["Smtp:TrustedCertificatePath"] = trustedCertificatePath,
        ["Smtp:Retries"] = "0",
    };

    private string TrustedPem(X509Certificate2 certificate)
    {
        var path = Path.Combine(_directory.FullName, $"{certificate.Thumbprint}.pem");
        File.WriteAllText(path, certificate.ExportCertificatePem());
        return path;
    }

    /// <summary>A self-signed certificate for one address, as a relay on a private network might have.</summary>
    private static X509Certificate2 SelfSignedFor(IPAddress address)
    {
        using var key = RSA.Create(2048);
        using var created = RequestFor(address, key).CreateSelfSigned(DateTimeOffset.UtcNow.AddMinutes(-5), DateTimeOffset.UtcNow.AddDays(1));
        return WithPrivateKey(created);
    }

    private static CertificateRequest RequestFor(IPAddress address, RSA key)
    {
        var request = new CertificateRequest($"CN={address}", key, HashAlgorithmName.SHA256, RSASignaturePadding.Pkcs1);
        var names = new SubjectAlternativeNameBuilder();
        names.AddIpAddress(address);
        request.CertificateExtensions.Add(names.Build());
        return request;
    }

    // The server needs the private key in a form SslStream can use on Linux: a PKCS#12 round trip.
    private static X509Certificate2 WithPrivateKey(X509Certificate2 certificate) =>
        X509CertificateLoader.LoadPkcs12(certificate.Export(X509ContentType.Pkcs12), null);
}
