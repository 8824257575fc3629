using System.Globalization;
using System.Text.RegularExpressions;

namespace Subscriptions.Subscribers;

/// <summary>
/// When a subscriber gets their digest: an hour (0–23) in an IANA time zone, daily or weekly on a weekday.
/// A null zone or hour is the operator's default (<c>Digest:TimeZone</c>, the hour of <c>Digest:Schedule</c>).
/// </summary>
internal sealed partial record DeliveryChoice(string? TimeZone, int? Hour, string Frequency, int? Weekday)
{
    public const string Daily = "daily";
    public const string Weekly = "weekly";

    public static readonly DeliveryChoice Default = new(null, null, Daily, null);

    /// <summary>ISO weekdays: index 0 is Monday (1) … 6 Sunday (7).</summary>
    public static readonly string[] Weekdays = ["monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday"];

    public string? WeekdayName => Weekday is { } day ? Weekdays[day - 1] : null;

    /// <summary>
    /// Checks the fields as typed (all optional); each problem is keyed by its field's name. <paramref name="hour"/>
    /// is text as a form sends it; JSON numbers arrive formatted.
    /// </summary>
    public static DeliveryChoice? Validate(string? timeZone, string? hour, string? frequency, string? weekday, Dictionary<string, string[]> errors)
    {
        var zone = string.IsNullOrWhiteSpace(timeZone) ? null : timeZone.Trim();
        if (zone is not null && !IsIanaZone(zone))
        {
            errors["timeZone"] = ["must be an IANA time zone this server knows, such as Europe/Berlin or America/New_York"];
        }

        int? deliveryHour = null;
        if (!string.IsNullOrWhiteSpace(hour))
        {
            if (int.TryParse(hour.Trim(), NumberStyles.None, CultureInfo.InvariantCulture, out var value) && value is >= 0 and <= 23)
            {
                deliveryHour = value;
            }
            else
            {
                errors["deliveryHour"] = ["must be a whole hour from 0 to 23"];
            }
        }

        var often = string.IsNullOrWhiteSpace(frequency) ? Daily : frequency.Trim().ToLowerInvariant();
        if (often is not (Daily or Weekly))
        {
            errors["frequency"] = ["must be daily or weekly"];
        }

        int? day = null;
        if (!string.IsNullOrWhiteSpace(weekday))
        {
            var index = Array.IndexOf(Weekdays, weekday.Trim().ToLowerInvariant());
            if (index < 0)
            {
                errors["weekday"] = ["must be a day of the week: monday, tuesday, wednesday, thursday, friday, saturday or sunday"];
            }
            else
            {
                day = index + 1;
            }
        }
        else if (often == Weekly)
        {
            errors["weekday"] = ["is required for a weekly digest: monday … sunday"];
        }

        return errors.ContainsKey("timeZone") || errors.ContainsKey("deliveryHour") || errors.ContainsKey("frequency") || errors.ContainsKey("weekday")
            ? null
            : new DeliveryChoice(zone, deliveryHour, often, often == Weekly ? day : null);
    }

    /// <summary>
    /// A zone name as the tz database spells it. Linux's .NET also finds Windows names ("W. Europe Standard Time"),
    /// and its lookup reads files by that name, so only tz-style names are tried.
    /// </summary>
    private static bool IsIanaZone(string id) =>
        id.Length <= 64 && IanaName().IsMatch(id) && !id.Contains("..", StringComparison.Ordinal)
        && TimeZoneInfo.TryFindSystemTimeZoneById(id, out _)
        && (id == "UTC" || !TimeZoneInfo.TryConvertWindowsIdToIanaId(id, out _));

    [GeneratedRegex(@"^[A-Za-z][A-Za-z0-9_+\-]*(/[A-Za-z0-9_+\-]+){0,2}$")]
    private static partial Regex IanaName();
}
