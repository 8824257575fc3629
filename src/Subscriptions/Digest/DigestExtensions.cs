using Subscriptions.Database;
using Subscriptions.Email;
using Subscriptions.Matching;
using Subscriptions.Papers;
using Subscriptions.Subscribers;

namespace Subscriptions.Digest;

internal static class DigestExtensions
{
    /// <summary>Everything a run of the digest needs, without the web endpoints (the <c>digest</c> verb, the benchmark).</summary>
    public static IServiceCollection AddDigestPipeline(this IServiceCollection services) =>
        services.AddDatabase().AddMailSending().AddLinks().AddPapers().AddMatching().AddDigest();

    /// <summary>Planning, rendering and sending the daily digest (what the <c>digest</c> verb needs).</summary>
    public static IServiceCollection AddDigest(this IServiceCollection services)
    {
        services.AddSingleton<DigestEmails>();
        services.AddSingleton<DeliveryPlanner>();
        services.AddSingleton<DeliverySender>();
        services.AddSingleton<DigestRunner>();
        services.AddSingleton<DeliverySignal>();
        return services;
    }

    /// <summary>
    /// What <c>serve</c> adds, unless <c>Digest:Enabled</c> is false (a web-only instance): its share of
    /// the clustered daily trigger, and its delivery worker.
    /// </summary>
    public static IServiceCollection AddDigestService(this IServiceCollection services, IConfiguration configuration)
    {
        if (configuration.GetValue("Digest:Enabled", defaultValue: true))
        {
            services.AddDigestSchedule();
            services.AddHostedService<DeliveryWorker>();
        }
        return services;
    }
}
