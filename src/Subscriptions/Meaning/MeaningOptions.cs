using System.ComponentModel.DataAnnotations;

namespace Subscriptions.Meaning;

/// <summary>
/// <c>Matching:Semantic</c> (meaning on or off), <c>Matching:SemanticThreshold</c> (the cosine from which a paper
/// is close enough to a topic) and <c>Matching:ModelPath</c> (a folder with another <c>model.onnx</c> and <c>vocab.txt</c>).
/// </summary>
internal sealed class MeaningOptions
{
    public const string Section = "Matching";

    public bool Semantic { get; set; } = true;

    // Calibrated on the judged set (tests/Subscriptions.Tests/Payloads/judged-topics.json); see JudgedSetTests.
    [Range(0.0, 1.0, ErrorMessage = "must be a cosine between {1} and {2}")]
    public double SemanticThreshold { get; set; } = DefaultThreshold;

    public string? ModelPath { get; set; }

    public const double DefaultThreshold = 0.25;
}
