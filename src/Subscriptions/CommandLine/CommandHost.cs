using Microsoft.Extensions.Options;
using Subscriptions.Database;
using Subscriptions.Infrastructure;

namespace Subscriptions.CommandLine;

/// <summary>A verb's host: no web, its settings checked, the schema brought up to date (<see cref="Applied"/> says what that took).</summary>
internal sealed class CommandHost : IDisposable
{
    private readonly IHost _host;

    private CommandHost(IHost host, IReadOnlyList<string> applied)
    {
        _host = host;
        Applied = applied;
    }

    public IReadOnlyList<string> Applied { get; }

    public IServiceProvider Services => _host.Services;

    /// <summary>A verb's host builder: its configuration (appsettings.json of the content root, environment, <c>--Key=Value</c>).</summary>
    public static HostApplicationBuilder CreateBuilder(string[] settings) =>
        Host.CreateApplicationBuilder(new HostApplicationBuilderSettings { Args = settings, ContentRootPath = ContentRoot.Default(settings) });

    public static async Task<CommandHost> StartAsync(string[] settings, Action<IServiceCollection> addServices)
    {
        var builder = CreateBuilder(settings);
        builder.Services.AddDatabase().AddShutdownTimeout();
        addServices(builder.Services);
        var host = builder.Build();
        // Every bad setting at once, before anything runs.
        try
        {
            host.Services.GetRequiredService<IStartupValidator>().Validate();
            return new CommandHost(host, await host.Services.MigrateAsync());
        }
        catch
        {
            host.Dispose();
            throw;
        }
    }

    public void Dispose() => _host.Dispose();
}
