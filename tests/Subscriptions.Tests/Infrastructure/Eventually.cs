using System.Diagnostics;

namespace Subscriptions.Tests.Infrastructure;

/// <summary>Waits for something the app does in the background, looking again every 50 ms until a deadline.</summary>
public static class Eventually
{
    public static readonly TimeSpan DefaultTimeout = TimeSpan.FromSeconds(20);
    private static readonly TimeSpan LookAgainAfter = TimeSpan.FromMilliseconds(50);

    /// <summary>Returns once <paramref name="condition"/> holds; throws <see cref="TimeoutException"/> if it still does not at the deadline.</summary>
    public static Task TrueAsync(Func<bool> condition, string waitingFor, TimeSpan? timeout = null) =>
        TrueAsync(() => Task.FromResult(condition()), waitingFor, timeout);

    /// <inheritdoc cref="TrueAsync(Func{bool}, string, TimeSpan?)"/>
    public static Task TrueAsync(Func<Task<bool>> condition, string waitingFor, TimeSpan? timeout = null) =>
        ValueAsync(condition, holds => holds, waitingFor, describeLast: null, timeout);

    /// <summary>
    /// Reads until <paramref name="isDone"/> accepts what was read, and returns that. At the deadline it throws
    /// <see cref="TimeoutException"/>, saying what it waited for and, through <paramref name="describeLast"/>, what it read last.
    /// </summary>
    public static async Task<T> ValueAsync<T>(
        Func<Task<T>> read, Func<T, bool> isDone, string waitingFor, Func<T, string>? describeLast = null, TimeSpan? timeout = null)
    {
        var limit = timeout ?? DefaultTimeout;
        var clock = Stopwatch.StartNew();
        while (true)
        {
            var value = await read();
            if (isDone(value))
            {
                return value;
            }
            if (clock.Elapsed > limit)
            {
                var lastSeen = describeLast is null ? "" : $"; last seen: {describeLast(value)}";
                throw new TimeoutException($"Waited {limit.TotalSeconds:0.#} s for {waitingFor}{lastSeen}.");
            }
            await Task.Delay(LookAgainAfter);
        }
    }
}
