using System.Security.Cryptography;
using NSec.Cryptography;

namespace Subscriptions.Email;

/// <summary>
/// A DKIM private key, and the DNS record that publishes its public half: RSA (<c>rsa-sha256</c>, RFC 6376) or Ed25519
/// (<c>ed25519-sha256</c>, RFC 8463). The algorithm follows the key in the file.
/// </summary>
internal abstract class DkimKey : IDisposable
{
    public const int MinimumRsaBits = 2048;

    /// <summary>The signature's <c>a=</c> tag.</summary>
    public abstract string Algorithm { get; }

    /// <summary>What the key is, for messages: "2048-bit RSA", "Ed25519".</summary>
    public abstract string Description { get; }

    /// <summary>The DNS record's text: <c>v=DKIM1; k=…; p=</c> and the public key in base64.</summary>
    public abstract string DnsRecordValue { get; }

    /// <summary>The signature (<c>b=</c>, before base64) of the canonical headers, with SHA-256 as the hash.</summary>
    public abstract byte[] Sign(ReadOnlySpan<byte> canonicalHeaders);

    /// <summary>The private key as PEM: PKCS#1 for RSA, PKCS#8 for Ed25519 (as <c>openssl genpkey</c> writes one).</summary>
    public abstract string ExportPem();

    /// <summary>The DNS TXT record (zone-file style) that publishes the public half for this selector and domain.</summary>
    public string DnsRecord(string selector, string domain) => $"{selector}._domainkey.{domain} TXT \"{DnsRecordValue}\"";

    public static DkimKey CreateRsa(int bits) => new RsaDkimKey(RSA.Create(bits));

    public static DkimKey CreateEd25519() => Ed25519DkimKey.Create();

    /// <summary>
    /// Reads a PEM private key: RSA (PKCS#1 or PKCS#8) or Ed25519 (PKCS#8). Returns null, and in <paramref name="problem"/>
    /// why, when the file cannot be read, holds no such private key, or holds an RSA key shorter than <see cref="MinimumRsaBits"/>.
    /// </summary>
    public static DkimKey? Load(string path, out string? problem)
    {
        string pem;
        try
        {
            pem = File.ReadAllText(path);
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException or ArgumentException or NotSupportedException)
        {
            problem = $"{path} cannot be read: {e.Message}";
            return null;
        }

        if (Ed25519DkimKey.FromPem(pem) is { } ed25519)
        {
            problem = null;
            return ed25519;
        }

        var rsa = RSA.Create();
        try
        {
            rsa.ImportFromPem(pem);
            // A public key imports too; signing needs the private half.
            rsa.ExportRSAPrivateKey();
        }
        catch (Exception e) when (e is ArgumentException or CryptographicException)
        {
            rsa.Dispose();
            problem = $"{path} holds no PEM RSA or Ed25519 private key (\"-----BEGIN RSA PRIVATE KEY-----\" or \"-----BEGIN PRIVATE KEY-----\", unencrypted): {e.Message}";
            return null;
        }

        if (rsa.KeySize < MinimumRsaBits)
        {
            problem = $"{path} holds a {rsa.KeySize}-bit RSA key; DKIM keys need at least {MinimumRsaBits} bits (make one with `dkim generate`)";
            rsa.Dispose();
            return null;
        }
        problem = null;
        return new RsaDkimKey(rsa);
    }

    public virtual void Dispose()
    {
    }
}

/// <summary>An RSA key, signing with the platform's RSA (OpenSSL on Linux: ~0.2 ms a signature for 2048 bits here).</summary>
internal sealed class RsaDkimKey(RSA rsa) : DkimKey
{
    public override string Algorithm => "rsa-sha256";

    public override string Description => $"{rsa.KeySize}-bit RSA";

    public override string DnsRecordValue => $"v=DKIM1; k=rsa; p={Convert.ToBase64String(rsa.ExportSubjectPublicKeyInfo())}";

    // One key serves every sender at once: OpenSSL signs with a context per operation and never changes the key.
    public override byte[] Sign(ReadOnlySpan<byte> canonicalHeaders) =>
        rsa.SignData(canonicalHeaders, HashAlgorithmName.SHA256, RSASignaturePadding.Pkcs1);

    public override string ExportPem() => rsa.ExportRSAPrivateKeyPem();

    public override void Dispose() => rsa.Dispose();
}

/// <summary>
/// An Ed25519 key (RFC 8463), signing with libsodium's Ed25519 through NSec (.NET has none of its own): ~13 µs a signature
/// here, against ~29 µs through BouncyCastle's (which MimeKit brings) and ~200 µs for RSA-2048. Not every receiver
/// verifies it yet.
/// </summary>
internal sealed class Ed25519DkimKey(Key key) : DkimKey
{
    // Exportable: `dkim generate` writes the key it makes to a file.
    private static KeyCreationParameters Exportable => new() { ExportPolicy = KeyExportPolicies.AllowPlaintextExport };

    public override string Algorithm => "ed25519-sha256";

    public override string Description => "Ed25519";

    // RFC 8463 §4.2: p= is the bare 32-byte public key, not a SubjectPublicKeyInfo.
    public override string DnsRecordValue => $"v=DKIM1; k=ed25519; p={Convert.ToBase64String(key.PublicKey.Export(KeyBlobFormat.RawPublicKey))}";

    public static Ed25519DkimKey Create() => new(Key.Create(SignatureAlgorithm.Ed25519, Exportable));

    /// <summary>RFC 8463 §3: PureEdDSA over the SHA-256 hash of the canonical headers. Signing is stateless, so one key serves every sender.</summary>
    public override byte[] Sign(ReadOnlySpan<byte> canonicalHeaders)
    {
        Span<byte> hash = stackalloc byte[SHA256.HashSizeInBytes];
        SHA256.HashData(canonicalHeaders, hash);
        return SignatureAlgorithm.Ed25519.Sign(key, hash);
    }

    /// <summary>PKCS#8 (RFC 8410), as <c>openssl genpkey -algorithm ed25519</c> writes one.</summary>
    public override string ExportPem() => PemEncoding.WriteString("PRIVATE KEY", key.Export(KeyBlobFormat.PkixPrivateKey));

    /// <summary>The Ed25519 key of a PKCS#8 PEM, or null when the PEM holds anything else (an RSA key, or nothing readable).</summary>
    public static Ed25519DkimKey? FromPem(string pem)
    {
        if (!PemEncoding.TryFind(pem, out var fields) || pem[fields.Label] != "PRIVATE KEY")
        {
            return null;
        }
        // TryFind has checked the base64.
        return Key.TryImport(SignatureAlgorithm.Ed25519, Convert.FromBase64String(pem[fields.Base64Data]), KeyBlobFormat.PkixPrivateKey, out var key, Exportable)
            ? new Ed25519DkimKey(key!)
            : null;
    }

    public override void Dispose() => key.Dispose();
}
