using System.ComponentModel.DataAnnotations;

namespace Subscriptions.Observability;

internal sealed class MetricsOptions
{
    public const string Section = "Metrics";

    /// <summary>Whether <c>/metrics</c> (the Prometheus scrape) exists at all.</summary>
    public bool Enabled { get; set; } = true;

    /// <summary>A port of its own for <c>/metrics</c>, so the scrape need not go through the public listener; null: the app's port.</summary>
    [Range(1, 65535, ErrorMessage = "must be a TCP port between {1} and {2}")]
    public int? Port { get; set; }
}
