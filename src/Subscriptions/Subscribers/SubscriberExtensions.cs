using Microsoft.AspNetCore.HttpOverrides;
using Microsoft.Extensions.Options;
using Subscriptions.Database;
using Subscriptions.Email;
using Subscriptions.Infrastructure;
using Subscriptions.Matching;
using Subscriptions.Observability;
using Subscriptions.Web;

namespace Subscriptions.Subscribers;

internal static class SubscriberExtensions
{
    public const string SignupRateLimit = "signup";

    /// <summary>The signed links in emails (needs only <c>App:*</c>); the digest uses them too.</summary>
    public static IServiceCollection AddLinks(this IServiceCollection services) => services.AddFeature("links", services =>
    {
        services.AddSection<AppOptions>(AppOptions.Section);
        services.AddSingleton<LinkTokens>();
    });

    /// <summary>
    /// The subscriber lifecycle: signup (rate-limited per client address), confirmation, preferences and
    /// unsubscribe, and the outbox that sends the lifecycle's emails from a background worker.
    /// </summary>
    public static IServiceCollection AddSubscribers(this IServiceCollection services) => services.AddFeature("subscribers", services =>
    {
        services.AddDatabase().AddEmail().AddLinks().AddMatching().AddServiceMetrics();
        services.AddSingleton<SubscriberStore>();
        services.AddSingleton<SubscriberData>();
        services.AddSingleton<FeedbackStore>();
        services.AddSingleton<SignupValidator>();
        services.AddSingleton<SignupGate>();
        services.AddSingleton<LifecycleEmails>();
        services.AddSingleton<EmailOutbox>();
        services.AddSingleton<OutboxSignal>();
        services.AddHostedService<EmailOutboxWorker>();
        // Behind reverse proxies, the client that signups are counted against is the one they forward
        // (UseForwardedHeaders). ASPNETCORE_FORWARDEDHEADERS_ENABLED=true trusts any proxy; App:KnownProxies only those.
        services.AddOptions<ForwardedHeadersOptions>().Configure<IOptions<AppOptions>>((forwarded, app) =>
        {
            if (app.Value.KnownProxyNetworks is not { Count: > 0 } proxies)
            {
                return;
            }
            forwarded.ForwardedHeaders = ForwardedHeaders.XForwardedFor | ForwardedHeaders.XForwardedProto;
            forwarded.KnownIPNetworks.Clear();
            forwarded.KnownProxies.Clear();
            foreach (var proxy in proxies)
            {
                forwarded.KnownIPNetworks.Add(proxy);
            }
            // Each hop is taken only while the address it came from is a known proxy, so a chain of them works.
            forwarded.ForwardLimit = null;
        });
        services.AddRateLimiter(options => options.AddPerClientPerMinute(SignupRateLimit,
            context => context.RequestServices.GetRequiredService<IOptions<AppOptions>>().Value.SignupsPerMinute));
    });
}
