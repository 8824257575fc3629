using System.Globalization;
using System.Net;
using Microsoft.Extensions.Configuration;
using Microsoft.Extensions.Hosting;
using Subscriptions.Tests.Infrastructure;
using YamlDotNet.Core;
using YamlDotNet.Core.Events;
using YamlDotNet.Serialization;

namespace Subscriptions.Tests;

/// <summary>
/// deploy/compose.yaml and deploy/kubernetes/ cannot be run here (no container registry), so what can be
/// checked is: they parse, every setting they pass is one the service binds, and the service binary starts
/// and serves with exactly those settings against the test database.
/// </summary>
public sealed class DeploymentFilesTests(TestDatabase database) : IClassFixture<TestDatabase>
{
    // Secrets in the files are placeholders (the Kubernetes token secret is deliberately too short to start with).
    private const string TestSecretValue = "a-test-value-standing-in-for-a-secret-0123456789";

    private static readonly string Deploy = Path.Combine(RepositoryRoot(), "deploy");

    [Fact]
    public async Task ComposeSettingsAreKnownAndTheServiceStartsWithThem()
    {
        var compose = Map(LoadYaml(Path.Combine(Deploy, "compose.yaml")).Single());
        var service = Map(Map(compose["services"])["subscriptions"]);
        var environment = Map(service["environment"]).ToDictionary(e => (string)e.Key, e => Scalar(e.Value));

        AssertKnownSettings(environment);
        Assert.True(Duration(Scalar(service["stop_grace_period"])) > TimeSpan.Parse(environment["HostOptions__ShutdownTimeout"], CultureInfo.InvariantCulture),
            "stop_grace_period must exceed HostOptions__ShutdownTimeout");

        environment["ConnectionStrings__Postgres"] = database.ConnectionString;
        await AssertServesAsync(environment);
    }

    [Fact]
    public async Task KubernetesSettingsAreKnownAndTheServiceStartsWithThem()
    {
        var manifests = Directory.GetFiles(Path.Combine(Deploy, "kubernetes"), "*.yaml").SelectMany(LoadYaml).Select(Map).ToList();
        var settings = manifests.Single(m => Kind(m) == "ConfigMap");
        var secret = manifests.Single(m => Kind(m) == "Secret");
        var deployment = manifests.Single(m => Kind(m) == "Deployment");
        var configured = Map(settings["data"]).ToDictionary(e => (string)e.Key, e => Scalar(e.Value));
        var secrets = Map(secret["stringData"]).ToDictionary(e => (string)e.Key, e => Scalar(e.Value));

        var pod = Map(Map(Map(deployment["spec"])["template"])["spec"]);
        var container = Map(List(pod["containers"]).Single());
        Assert.Equal(
            new[] { Name(settings), Name(secret) },
            List(container["envFrom"]).Select(from => Map(from).Values.Select(reference => Scalar(Map(reference)["name"])).Single()));
        Assert.False(container.ContainsKey("env"), "settings belong in the ConfigMap or the Secret");

        var environment = configured.Concat(secrets).ToDictionary();
        AssertKnownSettings(environment);
        Assert.True(
            TimeSpan.FromSeconds(int.Parse(Scalar(pod["terminationGracePeriodSeconds"]), CultureInfo.InvariantCulture))
                > TimeSpan.Parse(configured["HostOptions__ShutdownTimeout"], CultureInfo.InvariantCulture),
            "terminationGracePeriodSeconds must exceed HostOptions__ShutdownTimeout");

        foreach (var key in secrets.Keys)
        {
            environment[key] = TestSecretValue;
        }
        environment["ConnectionStrings__Postgres"] = database.ConnectionString;
        // The scrape's port as well as the app's is a free one here, where another test may hold 9090.
        environment["Metrics__Port"] = LocalPrograms.FreePort().ToString(CultureInfo.InvariantCulture);
        await AssertServesAsync(environment);
    }

    [Fact]
    public void KubernetesManifestsProbeTheHealthEndpointsAndSelectTheDeploymentsPods()
    {
        var manifests = Directory.GetFiles(Path.Combine(Deploy, "kubernetes"), "*.yaml").SelectMany(LoadYaml).Select(Map).ToList();
        Assert.Equal(new[] { "ConfigMap", "Deployment", "PodDisruptionBudget", "Secret", "Service" }, manifests.Select(Kind).Order());

        var deployment = Map(manifests.Single(m => Kind(m) == "Deployment")["spec"]);
        Assert.Equal("2", Scalar(deployment["replicas"]));
        var template = Map(deployment["template"]);
        var podLabels = Map(Map(template["metadata"])["labels"]);
        var container = Map(List(Map(template["spec"])["containers"]).Single());
        Assert.Equal("/healthz/live", ProbePath(container, "livenessProbe"));
        Assert.Equal("/healthz/ready", ProbePath(container, "readinessProbe"));
        var ports = List(container["ports"]).Select(Map).ToDictionary(port => Scalar(port["name"]), port => Scalar(port["containerPort"]));
        var settings = Map(manifests.Single(m => Kind(m) == "ConfigMap")["data"]);
        Assert.Equal(Scalar(settings["Metrics__Port"]), ports["metrics"]);
        Assert.Equal(ports["metrics"], Scalar(Map(Map(template["metadata"])["annotations"])["prometheus.io/port"]));

        // The public port, and not the scrape's.
        var service = Map(manifests.Single(m => Kind(m) == "Service")["spec"]);
        Assert.Equal(podLabels, Map(service["selector"]));
        Assert.Equal("http", Scalar(Map(List(service["ports"]).Single())["targetPort"]));
        Assert.Equal("8080", ports["http"]); // the image's ASPNETCORE_HTTP_PORTS
        var budget = Map(manifests.Single(m => Kind(m) == "PodDisruptionBudget")["spec"]);
        Assert.Equal(podLabels, Map(Map(budget["selector"])["matchLabels"]));
        Assert.Equal(podLabels, Map(Map(deployment["selector"])["matchLabels"]));
    }

    [Fact]
    public void TheSystemdUnitTrustsItsLocalProxyWithKnownSettings()
    {
        var settings = UnitEnvironment()
            .Where(pair => pair.Key.Contains("__", StringComparison.Ordinal)) // ASPNETCORE_URLS is the host's, DOTNET_* the runtime's
            .ToDictionary();

        Assert.Equal("127.0.0.1,::1", settings["App__KnownProxies"]);
        AssertKnownSettings(settings);
    }

    /// <summary>
    /// The runtime reads its first generation's size only from the environment, so each way of running the service sets it
    /// (the image for Compose and Kubernetes), and `dotnet run` sets it for the benchmarks, which measure the service as
    /// deployed. The runtime reads the value as hexadecimal, with or without 0x.
    /// </summary>
    [Fact]
    public void EveryWayOfRunningTheServiceGivesItTheSameFirstGeneration()
    {
        var launchSettings = System.Text.Json.JsonDocument.Parse(File.ReadAllText(
            Path.Combine(RepositoryRoot(), "bench", "Subscriptions.Benchmarks", "Properties", "launchSettings.json")));
        var sizes = new Dictionary<string, string?>
        {
            ["Dockerfile"] = Setting("Dockerfile", @"^ENV DOTNET_GCgen0size=(\S+)$"),
            ["subscriptions.service"] = UnitEnvironment().GetValueOrDefault("DOTNET_GCgen0size"),
            ["run-local.sh"] = Setting("run-local.sh", @"^export DOTNET_GCgen0size=""\$\{DOTNET_GCgen0size:-(\S+)\}""$"),
            ["the benchmarks' launch profile"] = launchSettings.RootElement.GetProperty("profiles").EnumerateObject().Single()
                .Value.GetProperty("environmentVariables").GetProperty("DOTNET_GCgen0size").GetString(),
        };

        foreach (var (where, size) in sizes)
        {
            Assert.True(size is not null && Convert.ToInt64(size, 16) == 16 * 1024 * 1024, $"{where} sets DOTNET_GCgen0size to {size ?? "nothing"}, not 0x1000000 (16 MB)");
        }

        static string? Setting(string file, string pattern) => File.ReadLines(Path.Combine(Deploy, file))
            .Select(line => System.Text.RegularExpressions.Regex.Match(line, pattern)).SingleOrDefault(match => match.Success)?.Groups[1].Value;
    }

    /// <summary>The systemd unit's <c>Environment=</c> lines, variable by variable.</summary>
    private static Dictionary<string, string> UnitEnvironment() =>
        File.ReadLines(Path.Combine(Deploy, "subscriptions.service"))
            .Where(line => line.StartsWith("Environment=", StringComparison.Ordinal))
            .Select(line => line["Environment=".Length..].Split('=', 2))
            .ToDictionary(pair => pair[0], pair => pair[1]);

    [Fact]
    public void AMisspeltSettingIsCaught()
    {
        Assert.Empty(UnknownSettings(new Dictionary<string, string> { ["Smtp__Host"] = "smtp.example.org", ["HostOptions__ShutdownTimeout"] = "00:00:30" }));
        Assert.Equal(new[] { "Smtp:Hots", "Smpt:Host", "TokenSecret" }, UnknownSettings(new Dictionary<string, string>
        {
            ["Smtp__Hots"] = "smtp.example.org",
            ["Smpt__Host"] = "smtp.example.org",
            ["TokenSecret"] = TestSecretValue,
        }));
    }

    /// <summary>Every key binds to one of the service's options classes (or the host's), with the binder refusing unknown keys.</summary>
    private static void AssertKnownSettings(IReadOnlyDictionary<string, string> environment) =>
        Assert.True(UnknownSettings(environment) is [], $"Not settings of the service: {string.Join(", ", UnknownSettings(environment))}");

    private static List<string> UnknownSettings(IReadOnlyDictionary<string, string> environment) =>
        [.. environment.Select(e => (Key: e.Key.Replace("__", ":", StringComparison.Ordinal), e.Value)).Where(e => !IsKnown(e.Key, e.Value)).Select(e => e.Key)];

    private static bool IsKnown(string key, string value)
    {
        var section = key.Split(':')[0];
        if (section == key)
        {
            return false;
        }
        var configuration = new ConfigurationBuilder().AddInMemoryCollection([new(key, value)]).Build().GetSection(section);
        return OptionsTypes().Where(o => string.Equals(o.Section, section, StringComparison.OrdinalIgnoreCase)).Any(o =>
        {
            try
            {
                configuration.Bind(Activator.CreateInstance(o.Type, nonPublic: true), binder => binder.ErrorOnUnknownConfiguration = true);
                return true;
            }
            catch (InvalidOperationException)
            {
                return false;
            }
        });
    }

    /// <summary>The service's options classes (each names its section in a <c>Section</c> constant), and the host's own.</summary>
    private static IEnumerable<(string Section, Type Type)> OptionsTypes() =>
        typeof(Program).Assembly.GetTypes()
            .Select(type => (Field: type.GetField("Section"), Type: type))
            .Where(t => t.Field is { IsLiteral: true } && t.Field.FieldType == typeof(string))
            .Select(t => ((string)t.Field!.GetRawConstantValue()!, t.Type))
            .Append(("HostOptions", typeof(HostOptions)));

    /// <summary>Runs <c>serve</c> with exactly these settings (and a free loopback port) until it is live and ready.</summary>
    private static async Task AssertServesAsync(Dictionary<string, string> environment)
    {
        await using var serving = await ServiceBinary.ServeAsync(environment);
        using var client = new HttpClient { BaseAddress = serving.Address, Timeout = TimeSpan.FromSeconds(10) };
        Assert.Equal(HttpStatusCode.OK, (await client.GetAsync("/healthz/ready")).StatusCode);
    }

    private static List<object?> LoadYaml(string path)
    {
        var parser = new Parser(new StringReader(File.ReadAllText(path)));
        var deserializer = new DeserializerBuilder().Build();
        var documents = new List<object?>();
        parser.Consume<StreamStart>();
        while (parser.Accept<DocumentStart>(out _))
        {
            documents.Add(deserializer.Deserialize(parser));
        }
        return documents;
    }

    private static Dictionary<object, object?> Map(object? node) =>
        Assert.IsType<Dictionary<object, object?>>(node);

    private static List<object?> List(object? node) => Assert.IsType<List<object?>>(node);

    private static string Scalar(object? node) => Assert.IsType<string>(node);

    private static string Kind(Dictionary<object, object?> manifest) => Scalar(manifest["kind"]);

    private static string Name(Dictionary<object, object?> manifest) => Scalar(Map(manifest["metadata"])["name"]);

    private static string ProbePath(Dictionary<object, object?> container, string probe) =>
        Scalar(Map(Map(container[probe])["httpGet"])["path"]);

    /// <summary>A Compose duration such as <c>45s</c> or <c>1m30s</c>.</summary>
    private static TimeSpan Duration(string text) =>
        System.Text.RegularExpressions.Regex.Matches(text, @"(\d+)(h|m|s)").Aggregate(TimeSpan.Zero, (total, part) => total + (part.Groups[2].Value switch
        {
            "h" => TimeSpan.FromHours(int.Parse(part.Groups[1].Value, CultureInfo.InvariantCulture)),
            "m" => TimeSpan.FromMinutes(int.Parse(part.Groups[1].Value, CultureInfo.InvariantCulture)),
            _ => TimeSpan.FromSeconds(int.Parse(part.Groups[1].Value, CultureInfo.InvariantCulture)),
        }));

    private static string RepositoryRoot()
    {
        var directory = new DirectoryInfo(AppContext.BaseDirectory);
        while (directory is not null && !File.Exists(Path.Combine(directory.FullName, "Subscriptions.sln")))
        {
            directory = directory.Parent;
        }
        return directory?.FullName ?? throw new InvalidOperationException($"No Subscriptions.sln above {AppContext.BaseDirectory}");
    }
}
