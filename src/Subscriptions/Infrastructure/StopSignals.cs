using System.Runtime.InteropServices;

namespace Subscriptions.Infrastructure;

/// <summary>
/// Ctrl+C and SIGTERM, taken from the runtime's default handling (which ends the process) while this lives: each cancels
/// <see cref="Token"/> instead, for work that stops on its own (the digest verb, migrations before a host runs).
/// </summary>
internal sealed class StopSignals : IDisposable
{
    // Not disposed: a handler already running on a signal's thread may cancel it after the registrations are gone.
    private readonly CancellationTokenSource _stop = new();
    private readonly PosixSignalRegistration _interrupt;
    private readonly PosixSignalRegistration _terminate;

    /// <param name="onStop">Said at each signal, before the token is cancelled.</param>
    public StopSignals(Action? onStop = null)
    {
        void Stop(PosixSignalContext context)
        {
            context.Cancel = true;
            onStop?.Invoke();
            _stop.Cancel();
        }
        _interrupt = PosixSignalRegistration.Create(PosixSignal.SIGINT, Stop);
        _terminate = PosixSignalRegistration.Create(PosixSignal.SIGTERM, Stop);
    }

    public CancellationToken Token => _stop.Token;

    public bool IsStopping => _stop.IsCancellationRequested;

    public void Dispose()
    {
        _interrupt.Dispose();
        _terminate.Dispose();
    }
}
