namespace Subscriptions.Matching;

/// <summary>Why a paper came, as the email and the pages say it: <c>mentions lidar · close to monocular depth</c>.</summary>
internal static class MatchReasons
{
    public static string Describe(IReadOnlyList<string> mentioned, IReadOnlyList<string>? closeTo) =>
        string.Join(" · ", mentioned.Select(topic => $"mentions {topic}").Concat((closeTo ?? []).Select(topic => $"close to {topic}")));
}
