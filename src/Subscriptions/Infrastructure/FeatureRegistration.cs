namespace Subscriptions.Infrastructure;

internal static class FeatureRegistration
{
    /// <summary>
    /// Runs a feature's registrations the first time only. Each feature adds the features it builds on
    /// (the digest adds papers, matching and email), so <c>serve</c>, the verbs and the benchmark name
    /// what they run and get the same services, with no second list to keep in step.
    /// </summary>
    public static IServiceCollection AddFeature(this IServiceCollection services, string feature, Action<IServiceCollection> register)
    {
        if (services.Any(service => service.ImplementationInstance is RegisteredFeature registered && registered.Name == feature))
        {
            return services;
        }
        services.AddSingleton(new RegisteredFeature(feature));
        register(services);
        return services;
    }

    private sealed record RegisteredFeature(string Name);
}
