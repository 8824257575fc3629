using Microsoft.Extensions.Options;

namespace Subscriptions.Infrastructure;

internal static class ShutdownOptions
{
    /// <summary>
    /// <c>HostOptions:ShutdownTimeout</c> (default 30 s): how long SIGTERM or Ctrl+C waits for the messages in
    /// flight and for claims to be handed back before the process exits anyway. The host itself only reads
    /// a top-level <c>shutdownTimeoutSeconds</c>; this binds the section operators expect.
    /// </summary>
    public static IServiceCollection AddShutdownTimeout(this IServiceCollection services)
    {
        // Above 30 s an orchestrator's default grace period kills the process first; zero or less leaves nothing to finish,
        // and a negative one made the bound below throw instead of stopping.
        services.AddOptions<HostOptions>()
            // Every service is told at once: one after another, the confirmation outbox went on claiming and sending until
            // Quartz had waited for a running firing, and was then cut off mid-send.
            .Configure(options => options.ServicesStopConcurrently = true)
            .BindConfiguration("HostOptions")
            .Validate(options => options.ShutdownTimeout > TimeSpan.Zero && options.ShutdownTimeout <= MaxShutdownTimeout,
                $"HostOptions:ShutdownTimeout must be more than 0 and at most {MaxShutdownTimeout} (30 seconds).")
            .ValidateOnStart();
        return services;
    }

    public static readonly TimeSpan MaxShutdownTimeout = TimeSpan.FromSeconds(30);

    /// <summary>
    /// Runs the host until it is stopped, and returns at the latest a few seconds after the shutdown
    /// timeout has run out. The host waits for every service to stop and every singleton to be disposed;
    /// with the database or the mail server unreachable, one of them can hang on a connection attempt
    /// long after the timeout, and an orchestrator would then kill the process harder. What is left
    /// undone is the documented window: at most the messages in flight, re-sent after their claim expires.
    /// </summary>
    public static async Task RunBoundedAsync(this IHost host)
    {
        // All taken before the host runs: a host that fails to start is disposed by RunAsync, sometimes before it returns.
        var lifetime = host.Services.GetRequiredService<IHostApplicationLifetime>();
        var timeout = host.Services.GetRequiredService<IOptions<HostOptions>>().Value.ShutdownTimeout;
        var logger = host.Services.GetRequiredService<ILoggerFactory>().CreateLogger(typeof(ShutdownOptions));
        var running = host.RunAsync();
        if (await StopsInTimeAsync(running, lifetime.ApplicationStopping, timeout, logger))
        {
            await running;
        }
    }

    /// <summary>
    /// Waits for <paramref name="running"/>; once <paramref name="stopping"/> is signalled, for at most the shutdown
    /// timeout and a few seconds more. False: it still runs, and the caller should exit without waiting for it
    /// (nor disposing what it uses, which can hang the same way).
    /// </summary>
    public static async Task<bool> StopsInTimeAsync(Task running, CancellationToken stopping, TimeSpan timeout, ILogger logger)
    {
        var stopped = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        using var registration = stopping.Register(() => stopped.TrySetResult());
        if (await Task.WhenAny(running, stopped.Task) == running
            || await Task.WhenAny(running, Task.Delay(timeout + TimeSpan.FromSeconds(5))) == running)
        {
            return true;
        }
        logger.LogWarning("Stopping took longer than HostOptions:ShutdownTimeout ({Timeout}); exiting without waiting further", timeout);
        return false;
    }
}
