using System.ComponentModel.DataAnnotations;
using MailKit.Security;

namespace Subscriptions.Bounces;

internal sealed class BouncesOptions : IValidatableObject
{
    public const string Section = "Bounces";

    /// <summary>The bounce mailbox; with no host, nothing reads it.</summary>
    public ImapOptions Imap { get; set; } = new();

    /// <summary>Where processed reports are moved; created if missing.</summary>
    [Required(ErrorMessage = "is required, e.g. \"Processed\"")]
    public string ProcessedFolder { get; set; } = "Processed";

    /// <summary>
    /// How long reports stay in <see cref="ProcessedFolder"/> after they arrived; 0 keeps them for good. They name
    /// subscribers' addresses, which an erasure cannot reach there.
    /// </summary>
    public TimeSpan KeepProcessed { get; set; } = TimeSpan.FromDays(30);

    /// <summary>How often the bounce mailbox is read.</summary>
    [Range(typeof(TimeSpan), "00:00:00.010", "1.00:00:00", ErrorMessage = "must be between {1} and {2}")]
    public TimeSpan PollInterval { get; set; } = TimeSpan.FromMinutes(1);

    /// <summary>Soft (4.x.x) bounces within <see cref="SoftBounceWindow"/> that suppress an address.</summary>
    [Range(1, 1000, ErrorMessage = "must be between {1} and {2}")]
    public int SoftBounceLimit { get; set; } = 3;

    [Range(typeof(TimeSpan), "00:01:00", "365.00:00:00", ErrorMessage = "must be between {1} and {2}")]
    public TimeSpan SoftBounceWindow { get; set; } = TimeSpan.FromDays(14);

    /// <summary>Signs providers' webhook calls; with none, <c>POST /webhooks/bounces</c> does not exist.</summary>
    [MinLength(16, ErrorMessage = "must be at least {1} characters long")]
    public string? WebhookSecret { get; set; }

    public bool HasWebhook => !string.IsNullOrEmpty(WebhookSecret);

    public IEnumerable<ValidationResult> Validate(ValidationContext validationContext)
    {
        if (KeepProcessed != TimeSpan.Zero && (KeepProcessed < TimeSpan.FromDays(1) || KeepProcessed > TimeSpan.FromDays(36_500)))
        {
            yield return new ValidationResult("must be 0 (kept for good) or between 1 and 36,500 days, e.g. 30.00:00:00", [nameof(KeepProcessed)]);
        }
        if (!Imap.HasHost)
        {
            yield break;
        }
        if (Imap.Port is < 1 or > 65535)
        {
            yield return new ValidationResult("must be between 1 and 65535", ["Imap:Port"]);
        }
        if (string.IsNullOrEmpty(Imap.Username) || string.IsNullOrEmpty(Imap.Password))
        {
            yield return new ValidationResult("and Bounces:Imap:Password are required when Bounces:Imap:Host is set", ["Imap:Username"]);
        }
        if (string.IsNullOrWhiteSpace(Imap.Folder))
        {
            yield return new ValidationResult("is required, e.g. \"INBOX\"", ["Imap:Folder"]);
        }
    }
}

internal sealed class ImapOptions
{
    public string? Host { get; set; }

    public int Port { get; set; } = 993;

    /// <summary>One of MailKit's <see cref="SecureSocketOptions"/>: Auto, None, StartTls, StartTlsWhenAvailable, SslOnConnect.</summary>
    public SecureSocketOptions Security { get; set; } = SecureSocketOptions.Auto;

    public string? Username { get; set; }

    public string? Password { get; set; }

    public string Folder { get; set; } = "INBOX";

    public bool HasHost => !string.IsNullOrWhiteSpace(Host);
}
