using Microsoft.Extensions.DependencyInjection.Extensions;
using Subscriptions.Database;
using Subscriptions.Email;
using Subscriptions.Infrastructure;

namespace Subscriptions.Bounces;

internal static class BouncesExtensions
{
    /// <summary>The suppression list and the recording of bounces and complaints (all the <c>suppressions</c> verb needs).</summary>
    public static IServiceCollection AddSuppressions(this IServiceCollection services) => services.AddFeature("suppressions", services =>
    {
        services.AddDatabase();
        services.AddSection<BouncesOptions>(BouncesOptions.Section);
        services.TryAddSingleton(TimeProvider.System);
        services.AddSingleton<SuppressionStore>();
    });

    /// <summary>
    /// What <c>serve</c> adds: the suppression list, the webhook's store, and, when <c>Bounces:Imap:Host</c>
    /// is set, the worker that reads the bounce mailbox.
    /// </summary>
    public static IServiceCollection AddBounces(this IServiceCollection services, IConfiguration configuration)
    {
        services.AddSuppressions();
        services.AddSingleton<WebhookRefusals>();
        if (!string.IsNullOrWhiteSpace(configuration["Bounces:Imap:Host"]))
        {
            services.AddEmail(); // for the return paths (VERP) that reports come back to
            services.AddSingleton<BounceMailbox>();
            services.AddSingleton<BounceMailboxSignal>();
            services.AddHostedService<BounceMailboxWorker>();
        }
        return services;
    }
}
