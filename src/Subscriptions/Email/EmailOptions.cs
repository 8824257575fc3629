using System.ComponentModel.DataAnnotations;
using System.Security.Cryptography;
using System.Security.Cryptography.X509Certificates;
using MailKit.Security;
using MimeKit;

namespace Subscriptions.Email;

internal sealed class SmtpOptions : IValidatableObject
{
    public const string Section = "Smtp";

    /// <summary>The SMTP relay. With no host, emails are written to <see cref="MailOptions.PickupDirectory"/>.</summary>
    public string? Host { get; set; }

    [Range(1, 65535, ErrorMessage = "must be between {1} and {2}")]
    public int Port { get; set; } = 587;

    public string? Username { get; set; }

    public string? Password { get; set; }

    /// <summary>One of MailKit's <see cref="SecureSocketOptions"/>: Auto, None, StartTls, StartTlsWhenAvailable, SslOnConnect.</summary>
    public SecureSocketOptions Security { get; set; } = SecureSocketOptions.Auto;

    /// <summary>
    /// A PEM certificate the relay's TLS certificate may chain to (the relay's own self-signed one, or a private CA), trusted
    /// besides the system's. The relay's name is still checked.
    /// </summary>
    public string? TrustedCertificatePath { get; set; }

    /// <summary>How many SMTP connections are kept open and used at once.</summary>
    [Range(1, 64, ErrorMessage = "must be between {1} and {2}")]
    public int Connections { get; set; } = 4;

    /// <summary>Longest wait for one SMTP exchange (connect, or send one message).</summary>
    [Range(typeof(TimeSpan), "00:00:01", "00:10:00", ErrorMessage = "must be between {1} and {2}")]
    public TimeSpan Timeout { get; set; } = TimeSpan.FromSeconds(30);

    /// <summary>
    /// A connection left unused longer than this is closed, and the next message opens a fresh one. Relays hang up on idle
    /// connections (Postfix after 300 s, its smtp-sink after 100 s, some after less); a message sent on one that was hung up
    /// fails, and with every connection stale at once, as at the start of each daily run, those failures tripped the circuit
    /// breaker and held up the whole run for <see cref="BreakDuration"/>.
    /// </summary>
    [Range(typeof(TimeSpan), "00:00:01", "01:00:00", ErrorMessage = "must be between {1} and {2}")]
    public TimeSpan IdleTimeout { get; set; } = TimeSpan.FromSeconds(30);

    /// <summary>First delay before retrying a transient failure; it doubles, with jitter, per retry.</summary>
    [Range(typeof(TimeSpan), "00:00:00", "00:10:00", ErrorMessage = "must be between {1} and {2}")]
    public TimeSpan RetryDelay { get; set; } = TimeSpan.FromSeconds(1);

    [Range(0, 10, ErrorMessage = "must be between {1} and {2}")]
    public int Retries { get; set; } = 3;

    /// <summary>When the server keeps failing, sending pauses this long before trying again (circuit breaker).</summary>
    [Range(typeof(TimeSpan), "00:00:00.500", "01:00:00", ErrorMessage = "must be between {1} and {2}")]
    public TimeSpan BreakDuration { get; set; } = TimeSpan.FromSeconds(30);

    /// <summary>The most messages this instance hands to the relay per second, over all its connections; 0 for no limit.</summary>
    [Range(0, 100_000, ErrorMessage = "must be between {1} and {2} (0: no limit)")]
    public int MaxPerSecond { get; set; }

    public bool HasHost => !string.IsNullOrWhiteSpace(Host);

    public bool IsThrottled => MaxPerSecond > 0;

    /// <summary>
    /// The longest wait before a retry: the first delay doubled once per retry (jitter stays under it), and a day at most
    /// (the most Polly takes).
    /// </summary>
    public TimeSpan LongestRetryDelay => TimeSpan.FromTicks((long)Math.Min(RetryDelay.Ticks * Math.Pow(2, Retries), TimeSpan.TicksPerDay));

    /// <summary>The longest one message's attempts can take: every attempt timing out, and the waits between them.</summary>
    public TimeSpan LongestAttempts => Timeout * (Retries + 1) + LongestRetryDelay * Retries;

    /// <summary>
    /// The longest one message's send can take once it is ready to go: waiting for a connection, which another message's
    /// attempts may hold, then its own.
    /// </summary>
    public TimeSpan LongestSend => LongestAttempts * 2;

    public IEnumerable<ValidationResult> Validate(ValidationContext validationContext)
    {
        if (!string.IsNullOrEmpty(Username) && string.IsNullOrEmpty(Password))
        {
            yield return new ValidationResult("is required when Smtp:Username is set", [nameof(Password)]);
        }
        if (!string.IsNullOrWhiteSpace(TrustedCertificatePath))
        {
            string? problem = null;
            try
            {
                using var certificate = LoadTrustedCertificate();
            }
            catch (Exception e) when (e is IOException or UnauthorizedAccessException or CryptographicException or ArgumentException)
            {
                problem = $"{TrustedCertificatePath} holds no readable PEM certificate (\"-----BEGIN CERTIFICATE-----\"): {e.Message}";
            }
            if (problem is not null)
            {
                yield return new ValidationResult(problem, [nameof(TrustedCertificatePath)]);
            }
        }
    }

    public X509Certificate2 LoadTrustedCertificate() => X509Certificate2.CreateFromPem(File.ReadAllText(TrustedCertificatePath!));
}

internal sealed class MailOptions : IValidatableObject
{
    public const string Section = "Mail";

    [Required(ErrorMessage = "is required, e.g. \"Trending Papers <papers@example.org>\"")]
    public string From { get; set; } = "Trending Papers <papers@localhost>";

    [Required(ErrorMessage = "is required")]
    public string PickupDirectory { get; set; } = "./outbox";

    /// <summary>How often the queue of emails is checked when nothing has woken it.</summary>
    [Range(typeof(TimeSpan), "00:00:00.010", "01:00:00", ErrorMessage = "must be between {1} and {2}")]
    public TimeSpan PollInterval { get; set; } = TimeSpan.FromSeconds(5);

    /// <summary>Wait before a queued email that failed is tried again; doubles per attempt, up to an hour.</summary>
    [Range(typeof(TimeSpan), "00:00:00.010", "01:00:00", ErrorMessage = "must be between {1} and {2}")]
    public TimeSpan RetryDelay { get; set; } = TimeSpan.FromSeconds(30);

    /// <summary>Attempts after which a queued email is given up as failed.</summary>
    [Range(1, 100, ErrorMessage = "must be between {1} and {2}")]
    public int MaxAttempts { get; set; } = 16;

    /// <summary>An address offered in List-Unsubscribe beside the link (optional): the operator acts on its mail; this service does not read it.</summary>
    public string? UnsubscribeMailto { get; set; }

    /// <summary>
    /// The bounce mailbox's address (bounces@example.org). When set, each email's envelope sender is
    /// <c>bounces+&lt;its signed identity&gt;@example.org</c> (VERP), so every bounce names the email it is about.
    /// </summary>
    public string? BounceAddress { get; set; }

    public MailboxAddress FromAddress => MailboxAddress.Parse(From);

    public MailboxAddress? BounceMailbox => string.IsNullOrWhiteSpace(BounceAddress) ? null : MailboxAddress.Parse(BounceAddress);

    public IEnumerable<ValidationResult> Validate(ValidationContext validationContext)
    {
        if (!MailboxAddress.TryParse(From, out var mailbox) || string.IsNullOrEmpty(mailbox.Domain))
        {
            yield return new ValidationResult(
                $"\"{From}\" is not one mailbox, e.g. \"Trending Papers <papers@example.org>\"", [nameof(From)]);
        }
        // It goes into the header as written: MimeKit also takes "<a@b>" (and a stray ">"), which would break the header, and
        // a domain in Unicode has to be given as punycode (xn--…) there.
        if (!string.IsNullOrEmpty(UnsubscribeMailto) && (!MailboxAddress.TryParse(UnsubscribeMailto, out var mailto) || !string.IsNullOrEmpty(mailto.Name)
            || string.IsNullOrEmpty(mailto.Domain) || UnsubscribeMailto.Any(c => c is '<' or '>' or ',' or '"' or '?' || char.IsWhiteSpace(c) || !char.IsAscii(c))))
        {
            yield return new ValidationResult($"\"{UnsubscribeMailto}\" is not a bare address, e.g. unsubscribe@example.org", [nameof(UnsubscribeMailto)]);
        }
        // The return path adds "+", the email's identity and a MAC (up to 54 characters) to the local part, which
        // must stay within SMTP's 64; a "+" of its own would make the tag ambiguous.
        if (!string.IsNullOrWhiteSpace(BounceAddress) && (!MailboxAddress.TryParse(BounceAddress, out var bounce) || !string.IsNullOrEmpty(bounce.Name)
            || string.IsNullOrEmpty(bounce.Domain) || bounce.LocalPart.Length > 10 || bounce.LocalPart.Contains('+', StringComparison.Ordinal)))
        {
            yield return new ValidationResult($"\"{BounceAddress}\" is not a bare address with a local part of at most 10 characters and no \"+\", e.g. bounces@example.org", [nameof(BounceAddress)]);
        }
    }
}
