using System.ComponentModel.DataAnnotations;
using MailKit.Security;
using MimeKit;
using Npgsql;

namespace Subscriptions.Configuration;

internal sealed class DatabaseOptions : IValidatableObject
{
    public const string Section = "ConnectionStrings";

    [Required(AllowEmptyStrings = false, ErrorMessage = "is required: the Npgsql connection string of the database")]
    public string Postgres { get; set; } = "";

    public IEnumerable<ValidationResult> Validate(ValidationContext validationContext)
    {
        string? problem = null;
        try
        {
            _ = new NpgsqlConnectionStringBuilder(Postgres);
        }
        catch (ArgumentException e)
        {
            problem = e.Message;
        }
        if (problem is not null)
        {
            yield return new ValidationResult($"is not a valid connection string: {problem}", [nameof(Postgres)]);
        }
    }
}

internal sealed class AppOptions
{
    public const string Section = "App";

    /// <summary>Public address of the service, used for every link inside emails.</summary>
    [Required(ErrorMessage = "is required"), HttpUrl]
    public string BaseUrl { get; set; } = "http://localhost:8080";

    /// <summary>Signs the links in emails; changing it invalidates every link already sent.</summary>
    [Required(AllowEmptyStrings = false, ErrorMessage = "is required: a random secret of at least 32 characters that signs the links in emails (e.g. `openssl rand -base64 32`)")]
    [MinLength(32, ErrorMessage = "must be at least 32 characters long")]
    public string TokenSecret { get; set; } = "";

    /// <summary>Signups accepted per client address per minute.</summary>
    [Range(1, 100_000, ErrorMessage = "must be between {1} and {2}")]
    public int SignupsPerMinute { get; set; } = 10;

    public Uri Link(string pathAndQuery) => new(new Uri(BaseUrl.TrimEnd('/') + "/"), pathAndQuery.TrimStart('/'));
}

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

    /// <summary>How many SMTP connections are kept open and used at once.</summary>
    [Range(1, 64, ErrorMessage = "must be between {1} and {2}")]
    public int Connections { get; set; } = 4;

    /// <summary>Longest wait for one SMTP exchange (connect, or send one message).</summary>
    [Range(typeof(TimeSpan), "00:00:01", "00:10:00", ErrorMessage = "must be between {1} and {2}")]
    public TimeSpan Timeout { get; set; } = TimeSpan.FromSeconds(30);

    /// <summary>First delay before retrying a transient failure; it doubles, with jitter, per retry.</summary>
    [Range(typeof(TimeSpan), "00:00:00", "00:10:00", ErrorMessage = "must be between {1} and {2}")]
    public TimeSpan RetryDelay { get; set; } = TimeSpan.FromSeconds(1);

    [Range(0, 10, ErrorMessage = "must be between {1} and {2}")]
    public int Retries { get; set; } = 3;

    /// <summary>When the server keeps failing, sending pauses this long before trying again (circuit breaker).</summary>
    [Range(typeof(TimeSpan), "00:00:00.500", "01:00:00", ErrorMessage = "must be between {1} and {2}")]
    public TimeSpan BreakDuration { get; set; } = TimeSpan.FromSeconds(30);

    public bool HasHost => !string.IsNullOrWhiteSpace(Host);

    public IEnumerable<ValidationResult> Validate(ValidationContext validationContext)
    {
        if (!string.IsNullOrEmpty(Username) && string.IsNullOrEmpty(Password))
        {
            yield return new ValidationResult("is required when Smtp:Username is set", [nameof(Password)]);
        }
    }
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

    /// <summary>An address that unsubscribes on receipt, offered in List-Unsubscribe beside the link (optional).</summary>
    public string? UnsubscribeMailto { get; set; }

    public MailboxAddress FromAddress => MailboxAddress.Parse(From);

    public IEnumerable<ValidationResult> Validate(ValidationContext validationContext)
    {
        if (!MailboxAddress.TryParse(From, out var mailbox) || string.IsNullOrEmpty(mailbox.Domain))
        {
            yield return new ValidationResult(
                $"\"{From}\" is not one mailbox, e.g. \"Trending Papers <papers@example.org>\"", [nameof(From)]);
        }
        if (!string.IsNullOrEmpty(UnsubscribeMailto) && (!MailboxAddress.TryParse(UnsubscribeMailto, out var mailto) || !string.IsNullOrEmpty(mailto.Name)))
        {
            yield return new ValidationResult($"\"{UnsubscribeMailto}\" is not a bare address, e.g. unsubscribe@example.org", [nameof(UnsubscribeMailto)]);
        }
    }
}

internal sealed class PapersOptions : IValidatableObject
{
    public const string Section = "Papers";
    public static readonly string[] KnownSources = ["huggingface", "arxiv", "file"];

    /// <summary>Comma-separated sources of the daily run.</summary>
    [Required(ErrorMessage = "is required")]
    public string Sources { get; set; } = "huggingface";

    public HuggingFaceSourceOptions HuggingFace { get; set; } = new();

    public ArxivSourceOptions Arxiv { get; set; } = new();

    public FileSourceOptions File { get; set; } = new();

    public PaperHttpOptions Http { get; set; } = new();

    public IReadOnlyList<string> SourceList => SplitList(Sources);

    public IEnumerable<ValidationResult> Validate(ValidationContext validationContext)
    {
        var unknown = SourceList.Where(source => !KnownSources.Contains(source, StringComparer.OrdinalIgnoreCase)).ToList();
        if (unknown.Count > 0 || SourceList.Count == 0)
        {
            yield return new ValidationResult(
                $"must list one or more of {string.Join(", ", KnownSources)}; \"{Sources}\" does not", [nameof(Sources)]);
        }
        if (!Uri.TryCreate(HuggingFace.BaseUrl, UriKind.Absolute, out _))
        {
            yield return new ValidationResult("must be an absolute URL", ["HuggingFace:BaseUrl"]);
        }
        if (!Uri.TryCreate(Arxiv.BaseUrl, UriKind.Absolute, out _))
        {
            yield return new ValidationResult("must be an absolute URL", ["Arxiv:BaseUrl"]);
        }
        if (Arxiv.CategoryList.Count == 0)
        {
            yield return new ValidationResult("must name at least one category, e.g. \"cs.CL, cs.LG\"", ["Arxiv:Categories"]);
        }
        foreach (var (value, low, high, key) in new (int, int, int, string)[]
        {
            (HuggingFace.PageSize, 1, 1000, "HuggingFace:PageSize"),
            (HuggingFace.MaxPages, 1, 100, "HuggingFace:MaxPages"),
            (Arxiv.PageSize, 1, 2000, "Arxiv:PageSize"),
            (Arxiv.MaxResults, 1, 30000, "Arxiv:MaxResults"),
            (Http.Retries, 0, 10, "Http:Retries"),
        })
        {
            if (value < low || value > high)
            {
                yield return new ValidationResult($"must be between {low} and {high}", [key]);
            }
        }
        if (Http.Timeout <= TimeSpan.Zero || Http.RetryDelay < TimeSpan.Zero || Arxiv.RequestInterval < TimeSpan.Zero)
        {
            yield return new ValidationResult("timeouts must be positive and delays not negative", ["Http"]);
        }
    }

    internal static IReadOnlyList<string> SplitList(string? value) =>
        (value ?? "").Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries);
}

internal sealed class HuggingFaceSourceOptions
{
    public string BaseUrl { get; set; } = "https://huggingface.co";

    /// <summary>Papers asked for per request (<c>limit</c>), and how many pages (<c>p</c>) at most.</summary>
    public int PageSize { get; set; } = 100;

    public int MaxPages { get; set; } = 10;
}

internal sealed class FileSourceOptions
{
    /// <summary>The file the <c>file</c> source reads when the daily run uses it.</summary>
    public string? Path { get; set; }
}

internal sealed class PaperHttpOptions
{
    /// <summary>Longest wait for one HTTP request to a paper source.</summary>
    public TimeSpan Timeout { get; set; } = TimeSpan.FromSeconds(30);

    /// <summary>Retries of a failed request (5xx, 408, 429, connection failure, timeout), exponential with jitter.</summary>
    public int Retries { get; set; } = 3;

    public TimeSpan RetryDelay { get; set; } = TimeSpan.FromSeconds(2);
}

internal sealed class ArxivSourceOptions
{
    public string BaseUrl { get; set; } = "https://export.arxiv.org/api/query";

    /// <summary>Comma-separated arXiv categories to follow.</summary>
    public string Categories { get; set; } = "cs.CL, cs.CV, cs.LG";

    public IReadOnlyList<string> CategoryList => PapersOptions.SplitList(Categories);

    public int PageSize { get; set; } = 100;

    /// <summary>The most papers taken from arXiv for one day.</summary>
    public int MaxResults { get; set; } = 500;

    /// <summary>arXiv asks API clients to leave 3 seconds between calls.</summary>
    public TimeSpan RequestInterval { get; set; } = TimeSpan.FromSeconds(3);
}

internal sealed class DigestOptions : IValidatableObject
{
    public const string Section = "Digest";

    /// <summary>Quartz cron expression (seconds first) for the daily run.</summary>
    [Required(ErrorMessage = "is required, e.g. \"0 0 7 * * ?\" for 07:00 every day")]
    public string Schedule { get; set; } = "0 0 7 * * ?";

    [Required(ErrorMessage = "is required, e.g. \"UTC\" or \"Europe/Berlin\"")]
    public string TimeZone { get; set; } = "UTC";

    [Range(1, 50, ErrorMessage = "must be between {1} and {2}")]
    public int MaxPapers { get; set; } = 10;

    /// <summary>Deliveries a sender claims at a time.</summary>
    [Range(1, 10_000, ErrorMessage = "must be between {1} and {2}")]
    public int BatchSize { get; set; } = 100;

    /// <summary>How long a claimed delivery stays a sender's; after that (the sender died) another may take it.</summary>
    [Range(typeof(TimeSpan), "00:00:01", "1.00:00:00", ErrorMessage = "must be between {1} and {2}")]
    public TimeSpan ClaimTimeout { get; set; } = TimeSpan.FromMinutes(10);

    /// <summary>Attempts after which a delivery that keeps failing transiently is given up.</summary>
    [Range(1, 100, ErrorMessage = "must be between {1} and {2}")]
    public int MaxAttempts { get; set; } = 8;

    /// <summary>First wait before a delivery that failed transiently is tried again; doubles per attempt, up to an hour.</summary>
    [Range(typeof(TimeSpan), "00:00:00.010", "01:00:00", ErrorMessage = "must be between {1} and {2}")]
    public TimeSpan RetryDelay { get; set; } = TimeSpan.FromMinutes(1);

    /// <summary>Permanent refusals (5xx) after which a subscriber is marked bounced and no longer mailed.</summary>
    [Range(1, 100, ErrorMessage = "must be between {1} and {2}")]
    public int BounceAfter { get; set; } = 3;

    /// <summary>How often each instance's senders look for deliveries that are due.</summary>
    [Range(typeof(TimeSpan), "00:00:00.010", "01:00:00", ErrorMessage = "must be between {1} and {2}")]
    public TimeSpan PollInterval { get; set; } = TimeSpan.FromSeconds(10);

    public TimeZoneInfo TimeZoneInfo => TimeZoneInfo.FindSystemTimeZoneById(TimeZone);

    public IEnumerable<ValidationResult> Validate(ValidationContext validationContext)
    {
        if (!TimeZoneInfo.TryFindSystemTimeZoneById(TimeZone, out _))
        {
            yield return new ValidationResult($"\"{TimeZone}\" is not a time zone this machine knows", [nameof(TimeZone)]);
        }
        if (!Quartz.CronExpression.IsValidExpression(Schedule))
        {
            yield return new ValidationResult(
                $"\"{Schedule}\" is not a Quartz cron expression (seconds minutes hours day-of-month month day-of-week)",
                [nameof(Schedule)]);
        }
    }
}
