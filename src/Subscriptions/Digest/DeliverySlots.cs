namespace Subscriptions.Digest;

/// <summary>A delivery hour in a time zone that falls due in a slot, and the subscriber's local date and ISO weekday there.</summary>
internal readonly record struct DueHour(string TimeZone, int Hour, DateOnly Day, int Weekday);

/// <summary>
/// Hourly slots: the slot at instant T (a whole UTC hour) covers every delivery time whose moment falls in
/// (T − 1 h, T]. A delivery time is a local hour on a local date; its moment is that wall-clock time, or,
/// when daylight saving skips it (02:00 on a spring-forward night), the first instant after the gap, and
/// when the clocks go back and it happens twice, the first of the two. So each local date has exactly one
/// moment per hour, and each falls in exactly one slot: no day is skipped or doubled.
/// </summary>
internal static class DeliverySlots
{
    public static readonly TimeSpan Length = TimeSpan.FromHours(1);

    /// <summary>The slot an instant belongs to: the whole UTC hour at or before it.</summary>
    public static DateTimeOffset SlotOf(DateTimeOffset instant)
    {
        var utc = instant.ToUniversalTime();
        return new DateTimeOffset(utc.Year, utc.Month, utc.Day, utc.Hour, 0, 0, TimeSpan.Zero);
    }

    /// <summary>The slot a moment falls due in: the whole UTC hour at or after it.</summary>
    public static DateTimeOffset SlotDue(DateTimeOffset moment) => SlotOf(moment + Length - TimeSpan.FromTicks(1));

    /// <summary>The slot the same delivery time fell due in on the local date <paramref name="days"/> before.</summary>
    public static DateTimeOffset SlotDaysBefore(DueHour due, int days) =>
        SlotDue(Moment(due.Day.AddDays(-days), due.Hour, TimeZoneInfo.FindSystemTimeZoneById(due.TimeZone)));

    /// <summary>The delivery hours of these time zones that fall due in the slot.</summary>
    public static IEnumerable<DueHour> DueIn(DateTimeOffset slot, IEnumerable<string> timeZones)
    {
        foreach (var id in timeZones)
        {
            if (!TimeZoneInfo.TryFindSystemTimeZoneById(id, out var zone))
            {
                continue; // validated at signup; a zone this machine no longer knows has no slot
            }
            foreach (var due in DueIn(slot, id, zone))
            {
                yield return due;
            }
        }
    }

    private static IEnumerable<DueHour> DueIn(DateTimeOffset slot, string id, TimeZoneInfo zone)
    {
        var start = slot - Length;
        var firstDay = DateOnly.FromDateTime(TimeZoneInfo.ConvertTime(start, zone).DateTime);
        var lastDay = DateOnly.FromDateTime(TimeZoneInfo.ConvertTime(slot, zone).DateTime);
        for (var day = firstDay; day <= lastDay; day = day.AddDays(1))
        {
            for (var hour = 0; hour < 24; hour++)
            {
                var moment = Moment(day, hour, zone);
                if (moment > start && moment <= slot)
                {
                    yield return new DueHour(id, hour, day, IsoWeekday(day));
                }
            }
        }
    }

    /// <summary>The instant of <paramref name="hour"/>:00 on <paramref name="day"/> in the zone (see the class comment for gaps and repeats).</summary>
    public static DateTimeOffset Moment(DateOnly day, int hour, TimeZoneInfo zone)
    {
        var local = day.ToDateTime(new TimeOnly(hour, 0));
        TimeSpan offset;
        if (zone.IsInvalidTime(local))
        {
            // Skipped by a spring-forward: with the offset in force before the gap, the wall-clock time
            // maps to the instant the clocks jumped.
            offset = zone.GetUtcOffset(local.AddDays(-1));
        }
        else if (zone.IsAmbiguousTime(local))
        {
            offset = zone.GetAmbiguousTimeOffsets(local).Max(); // the larger offset is the earlier instant
        }
        else
        {
            offset = zone.GetUtcOffset(local);
        }
        return new DateTimeOffset(local, offset).ToUniversalTime();
    }

    /// <summary>1 Monday … 7 Sunday.</summary>
    public static int IsoWeekday(DateOnly day) => day.DayOfWeek == DayOfWeek.Sunday ? 7 : (int)day.DayOfWeek;
}
