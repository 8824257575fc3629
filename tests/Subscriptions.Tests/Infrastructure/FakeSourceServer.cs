using System.Collections.Concurrent;
using System.Diagnostics;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Hosting;
using Microsoft.AspNetCore.Hosting.Server;
using Microsoft.AspNetCore.Hosting.Server.Features;
using Microsoft.AspNetCore.Http;
using Microsoft.AspNetCore.Http.Features;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Logging;

namespace Subscriptions.Tests.Infrastructure;

/// <summary>A request the fake source received: path and query, and when (since the server started).</summary>
public sealed record RecordedRequest(string Path, string Query, TimeSpan At);

/// <summary>
/// A real HTTP server (Kestrel on a loopback port) standing in for a paper source: it serves the
/// recorded payloads and faults that each test scripts, and records every request.
/// </summary>
public sealed class FakeSourceServer : IAsyncDisposable
{
    private readonly WebApplication _app;
    private readonly Stopwatch _clock = Stopwatch.StartNew();
    private readonly ConcurrentQueue<RecordedRequest> _requests = new();

    private FakeSourceServer(WebApplication app) => _app = app;

    public string BaseUrl { get; private set; } = "";

    public IReadOnlyList<RecordedRequest> Requests => [.. _requests];

    /// <summary>Starts a server whose every request is answered by <paramref name="handler"/>, given the request's number (1, 2, …).</summary>
    public static async Task<FakeSourceServer> StartAsync(Func<HttpContext, int, Task> handler)
    {
        var builder = WebApplication.CreateSlimBuilder();
        builder.WebHost.UseUrls("http://127.0.0.1:0");
        builder.Logging.ClearProviders();
        var app = builder.Build();
        var server = new FakeSourceServer(app);
        var count = 0;
        app.Run(context =>
        {
            server._requests.Enqueue(new RecordedRequest(context.Request.Path, Uri.UnescapeDataString(context.Request.QueryString.Value ?? ""), server._clock.Elapsed));
            return handler(context, Interlocked.Increment(ref count));
        });
        await app.StartAsync();
        server.BaseUrl = app.Services.GetRequiredService<IServer>().Features.GetRequiredFeature<IServerAddressesFeature>().Addresses.Single();
        return server;
    }

    public static string Payload(string name) => File.ReadAllText(Path.Combine(AppContext.BaseDirectory, "Payloads", name));

    public static Task Json(HttpContext context, string json) => Body(context, "application/json; charset=utf-8", json);

    public static Task Atom(HttpContext context, string xml) => Body(context, "application/atom+xml; charset=utf-8", xml);

    public static Task Body(HttpContext context, string contentType, string body)
    {
        context.Response.ContentType = contentType;
        return context.Response.WriteAsync(body);
    }

    public static Task Status(HttpContext context, int statusCode, string? retryAfter = null)
    {
        context.Response.StatusCode = statusCode;
        if (retryAfter is not null)
        {
            context.Response.Headers.RetryAfter = retryAfter;
        }
        return Task.CompletedTask;
    }

    public async ValueTask DisposeAsync()
    {
        await _app.StopAsync();
        await _app.DisposeAsync();
    }
}
