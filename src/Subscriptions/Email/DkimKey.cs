using System.Security.Cryptography;

namespace Subscriptions.Email;

/// <summary>A DKIM key: the RSA private key in a PEM file, and the DNS record that publishes its public half.</summary>
internal static class DkimKey
{
    public const int MinimumBits = 2048;

    /// <summary>
    /// Reads a PEM RSA private key (PKCS#1 or PKCS#8). Returns null, and in <paramref name="problem"/> why,
    /// when the file cannot be read, holds no RSA private key, or the key is shorter than <see cref="MinimumBits"/>.
    /// </summary>
    public static RSA? Load(string path, out string? problem)
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

        var key = RSA.Create();
        try
        {
            key.ImportFromPem(pem);
            // A public key imports too; signing needs the private half.
            key.ExportRSAPrivateKey();
        }
        catch (Exception e) when (e is ArgumentException or CryptographicException)
        {
            key.Dispose();
            problem = $"{path} holds no PEM RSA private key (\"-----BEGIN RSA PRIVATE KEY-----\" or \"-----BEGIN PRIVATE KEY-----\", unencrypted): {e.Message}";
            return null;
        }

        if (key.KeySize < MinimumBits)
        {
            problem = $"{path} holds a {key.KeySize}-bit RSA key; DKIM keys need at least {MinimumBits} bits (make one with `dkim generate`)";
            key.Dispose();
            return null;
        }
        problem = null;
        return key;
    }

    /// <summary>The DNS TXT record (zone-file style) that publishes the key's public half for this selector and domain.</summary>
    public static string DnsRecord(RSA key, string selector, string domain) =>
        $"{selector}._domainkey.{domain} TXT \"{DnsRecordValue(key)}\"";

    /// <summary>The record's text: <c>v=DKIM1; k=rsa; p=</c> and the base64 SubjectPublicKeyInfo.</summary>
    public static string DnsRecordValue(RSA key) => $"v=DKIM1; k=rsa; p={Convert.ToBase64String(key.ExportSubjectPublicKeyInfo())}";
}
