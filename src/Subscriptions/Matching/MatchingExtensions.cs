using Subscriptions.Database;
using Subscriptions.Infrastructure;
using Subscriptions.Papers;

namespace Subscriptions.Matching;

internal static class MatchingExtensions
{
    /// <summary>Topics against a day's papers: the rules a topic must follow, the matcher, and the preview of what an email would hold.</summary>
    public static IServiceCollection AddMatching(this IServiceCollection services) => services.AddFeature("matching", services =>
    {
        services.AddDatabase().AddPapers();
        services.AddSection<MatchingOptions>(MatchingOptions.Section);
        services.AddSingleton<TopicRules>();
        services.AddSingleton<TopicMatcher>();
        services.AddSingleton<DigestPreview>();
    });
}
