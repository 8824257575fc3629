using Microsoft.Extensions.Options;
using Subscriptions.Database;
using Subscriptions.Infrastructure;
using Subscriptions.Meaning;
using Subscriptions.Papers;
using Subscriptions.Web;

namespace Subscriptions.Matching;

internal static class MatchingExtensions
{
    /// <summary>The rate limit of previews (<c>/api/preview</c>, and the pages' Preview buttons: <c>?preview=1</c>).</summary>
    public const string PreviewRateLimit = "preview";

    /// <summary>Topics against a day's papers: the rules a topic must follow, the matcher, and the preview of what an email would hold.</summary>
    public static IServiceCollection AddMatching(this IServiceCollection services) => services.AddFeature("matching", services =>
    {
        services.AddDatabase().AddPapers().AddMeaning();
        services.AddSection<MatchingOptions>(MatchingOptions.Section);
        services.AddSingleton<TopicRules>();
        services.AddSingleton<TopicMatcher>();
        services.AddSingleton<DigestPreview>();
        services.AddSection<PreviewOptions>(PreviewOptions.Section);
        services.AddRateLimiter(options => options.AddPerClientPerMinute(PreviewRateLimit,
            context => context.RequestServices.GetRequiredService<IOptions<PreviewOptions>>().Value.PreviewsPerMinute,
            applies: context => context.Request.Path.StartsWithSegments("/api/preview") || context.Request.Query["preview"] == "1"));
    });
}
