using Microsoft.Extensions.Options;

namespace Subscriptions.Meaning;

/// <summary>
/// The configured sentence model, when meaning is on: checked at start-up (a missing or corrupt one stops the start), then
/// loaded while there are texts to embed (see <see cref="SentenceModel"/>).
/// </summary>
internal sealed class TextEmbedder(IOptions<MeaningOptions> options)
{
    public bool Enabled => options.Value.Semantic;

    public double Threshold => options.Value.SemanticThreshold;

    /// <summary>Stored beside every vector, so a change of model is noticed (and the <c>embed</c> verb redoes them).</summary>
    public string ModelName => SentenceModel.NameFor(options.Value.ModelPath);

    public float[][] Embed(IReadOnlyList<string> texts, CancellationToken cancellationToken) =>
        texts.Count == 0 ? [] : SentenceModel.Embed(options.Value.ModelPath, texts, cancellationToken);

    /// <summary>What a paper's vector is made of: its title, then its abstract (of which the model reads about the first 200 words).</summary>
    public static string PaperText(string title, string abstractText) => abstractText.Length == 0 ? title : $"{title}. {abstractText}";
}

/// <summary>Checks the model while the options are validated, so start-up fails on it with every other bad setting (exit code 78).</summary>
internal sealed class ModelValidator : IValidateOptions<MeaningOptions>
{
    public ValidateOptionsResult Validate(string? name, MeaningOptions options)
    {
        if (!options.Semantic)
        {
            return ValidateOptionsResult.Success;
        }
        try
        {
            SentenceModel.Check(options.ModelPath);
            return ValidateOptionsResult.Success;
        }
        catch (ModelLoadException e)
        {
            return ValidateOptionsResult.Fail($"{MeaningOptions.Section}:ModelPath {e.Message}");
        }
    }
}
