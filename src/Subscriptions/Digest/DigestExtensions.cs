using Microsoft.Extensions.Options;
using Subscriptions.Database;
using Subscriptions.Email;
using Subscriptions.Infrastructure;
using Subscriptions.Matching;
using Subscriptions.Observability;
using Subscriptions.Papers;
using Subscriptions.Subscribers;

namespace Subscriptions.Digest;

internal static class DigestExtensions
{
    /// <summary>Planning, rendering and sending the daily digest: all that a run needs (the <c>digest</c> verb, the benchmark).</summary>
    public static IServiceCollection AddDigest(this IServiceCollection services) => services.AddFeature("digest", services =>
    {
        services.AddDatabase().AddRetentionOptions().AddEmail().AddLinks().AddPapers().AddMatching().AddServiceMetrics();
        services.AddSection<DigestOptions>(DigestOptions.Section).Services.AddKnownSettings(DigestOptions.Section, ["Enabled"]);
        services.AddSingleton<IValidateOptions<DigestOptions>, ClaimOutlastsSendValidator>();
        services.AddSingleton<DigestEmails>();
        services.AddSingleton<DeliveryPlanner>();
        services.AddSingleton<DeliverySender>();
        services.AddSingleton<DigestRunner>();
        services.AddSingleton<DeliverySignal>();
    });

    /// <summary>
    /// What <c>serve</c> adds, unless <c>Digest:Enabled</c> is false (a web-only instance): its share of
    /// the clustered daily trigger, and its delivery worker.
    /// </summary>
    public static IServiceCollection AddDigestBackground(this IServiceCollection services, IConfiguration configuration)
    {
        services.AddDigest();
        if (configuration.GetValue("Digest:Enabled", defaultValue: true))
        {
            services.AddDigestSchedule();
            services.AddHostedService<DeliveryWorker>();
        }
        return services;
    }
}
