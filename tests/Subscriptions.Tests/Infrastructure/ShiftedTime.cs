namespace Subscriptions.Tests.Infrastructure;

/// <summary>The system clock moved to start at <paramref name="start"/>: it keeps running, and timers and delays stay real.</summary>
public sealed class ShiftedTime(DateTimeOffset start) : TimeProvider
{
    private readonly TimeSpan _offset = start - TimeProvider.System.GetUtcNow();

    public override DateTimeOffset GetUtcNow() => base.GetUtcNow() + _offset;
}
