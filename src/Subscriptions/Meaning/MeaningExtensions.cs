using Microsoft.Extensions.Options;
using Subscriptions.Database;
using Subscriptions.Infrastructure;

namespace Subscriptions.Meaning;

internal static class MeaningExtensions
{
    /// <summary>The sentence model and the vectors of papers and topics it makes.</summary>
    public static IServiceCollection AddMeaning(this IServiceCollection services) => services.AddFeature("meaning", services =>
    {
        services.AddDatabase();
        services.AddSingleton<IValidateOptions<MeaningOptions>, ModelValidator>();
        services.AddSection<MeaningOptions>(MeaningOptions.Section);
        services.AddSingleton<TextEmbedder>();
        services.AddSingleton<EmbeddingStore>();
    });
}
