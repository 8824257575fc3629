using System.ComponentModel.DataAnnotations;
using Microsoft.Extensions.Options;
using Subscriptions.Email;

namespace Subscriptions.Digest;

internal sealed class DigestOptions : IValidatableObject
{
    public const string Section = "Digest";

    /// <summary>Quartz cron expression (seconds first) for the daily run.</summary>
    [Required(ErrorMessage = "is required, e.g. \"0 0 7 * * ?\" for 07:00 every day")]
    public string Schedule { get; set; } = "0 0 7 * * ?";

    [Required(ErrorMessage = "is required, e.g. \"UTC\" or \"Europe/Berlin\"")]
    public string TimeZone { get; set; } = "UTC";

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

    /// <summary>
    /// The delivery hour of subscribers who chose none: the hour of <see cref="Schedule"/>'s first time on a day
    /// (a Monday without a DST change), in <see cref="TimeZone"/>.
    /// </summary>
    public int DefaultHour
    {
        get
        {
            var zone = TimeZoneInfo;
            var midnight = new DateTimeOffset(new DateTime(2026, 1, 5), zone.GetUtcOffset(new DateTime(2026, 1, 5)));
            var first = new Quartz.CronExpression(Schedule, zone).GetNextValidTimeAfter(midnight.AddTicks(-1));
            return first is { } time ? TimeZoneInfo.ConvertTime(time, zone).Hour : 0;
        }
    }

    public IEnumerable<ValidationResult> Validate(ValidationContext validationContext)
    {
        if (!TimeZoneInfo.TryFindSystemTimeZoneById(TimeZone, out _))
        {
            yield return new ValidationResult($"\"{TimeZone}\" is not a time zone this machine knows", [nameof(TimeZone)]);
        }
        if (!Quartz.CronExpression.TryParse(Schedule, out _))
        {
            yield return new ValidationResult(
                $"\"{Schedule}\" is not a Quartz cron expression (seconds minutes hours day-of-month month day-of-week)",
                [nameof(Schedule)]);
        }
    }
}

/// <summary>
/// A sender sends a claimed delivery only while its claim will outlast the send (DeliverySender's check): a claim shorter
/// than the longest send would never let one go.
/// </summary>
internal sealed class ClaimOutlastsSendValidator(IOptions<SmtpOptions> smtp) : IValidateOptions<DigestOptions>
{
    public ValidateOptionsResult Validate(string? name, DigestOptions options)
    {
        var longestSend = smtp.Value.LongestSend;
        return options.ClaimTimeout > longestSend
            ? ValidateOptionsResult.Success
            : ValidateOptionsResult.Fail(
                $"{DigestOptions.Section}:{nameof(DigestOptions.ClaimTimeout)} ({options.ClaimTimeout}) must be longer than the longest one send " +
                $"can take with these {SmtpOptions.Section} settings ({longestSend}: twice {nameof(SmtpOptions.Timeout)} × ({nameof(SmtpOptions.Retries)} + 1) " +
                $"and {nameof(SmtpOptions.Retries)} waits of up to {nameof(SmtpOptions.RetryDelay)} × 2^{nameof(SmtpOptions.Retries)}, as a message may wait for " +
                "another's attempts to have a connection), " +
                "or a claimed delivery could be taken by another sender while it is being sent");
    }
}
