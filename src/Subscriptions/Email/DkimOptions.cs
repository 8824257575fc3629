using System.ComponentModel.DataAnnotations;

namespace Subscriptions.Email;

/// <summary>DKIM signing of every outgoing email: all three settings, or none.</summary>
internal sealed class DkimOptions : IValidatableObject
{
    public const string Section = "Dkim";

    /// <summary>The signing domain (<c>d=</c>), normally the domain of <c>Mail:From</c>.</summary>
    public string? Domain { get; set; }

    /// <summary>The selector (<c>s=</c>): the key is published at <c>selector._domainkey.domain</c>.</summary>
    public string? Selector { get; set; }

    /// <summary>A PEM file holding the private key: RSA (2048 bits or more; rsa-sha256) or Ed25519 (ed25519-sha256).</summary>
    public string? PrivateKeyPath { get; set; }

    /// <summary>
    /// Whether Date and Message-ID are among the signed headers (the default). Amazon SES replaces both with its own, which
    /// broke every signature made with them: false for such a relay.
    /// </summary>
    public bool SignDateAndMessageId { get; set; } = true;

    public bool IsEnabled => !string.IsNullOrWhiteSpace(Domain) && !string.IsNullOrWhiteSpace(Selector) && !string.IsNullOrWhiteSpace(PrivateKeyPath);

    public IEnumerable<ValidationResult> Validate(ValidationContext validationContext)
    {
        var settings = new Dictionary<string, string?>
        {
            [nameof(Domain)] = Domain,
            [nameof(Selector)] = Selector,
            [nameof(PrivateKeyPath)] = PrivateKeyPath,
        };
        var missing = settings.Where(setting => string.IsNullOrWhiteSpace(setting.Value)).Select(setting => setting.Key).ToList();
        if (missing.Count == settings.Count)
        {
            yield break;
        }
        foreach (var name in missing)
        {
            yield return new ValidationResult(
                $"is required when any DKIM setting is set (Dkim:Domain, Dkim:Selector and Dkim:PrivateKeyPath go together)", [name]);
        }
        if (!string.IsNullOrWhiteSpace(Domain) && Uri.CheckHostName(Domain) != UriHostNameType.Dns)
        {
            yield return new ValidationResult($"\"{Domain}\" is not a domain name, e.g. example.org", [nameof(Domain)]);
        }
        if (!string.IsNullOrWhiteSpace(Selector) && Uri.CheckHostName(Selector) != UriHostNameType.Dns)
        {
            yield return new ValidationResult($"\"{Selector}\" is not a DNS label, e.g. papers2026", [nameof(Selector)]);
        }
        if (!string.IsNullOrWhiteSpace(PrivateKeyPath))
        {
            using var key = DkimKey.Load(PrivateKeyPath, out var problem);
            if (problem is not null)
            {
                yield return new ValidationResult(problem, [nameof(PrivateKeyPath)]);
            }
        }
    }
}
