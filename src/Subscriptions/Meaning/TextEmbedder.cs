using Microsoft.Extensions.Options;

namespace Subscriptions.Meaning;

/// <summary>The configured sentence model, loaded at start-up (a missing or corrupt one stops the start) and only when meaning is on.</summary>
internal sealed class TextEmbedder(IOptions<MeaningOptions> options)
{
    public bool Enabled => options.Value.Semantic;

    public double Threshold => options.Value.SemanticThreshold;

    public SentenceModel Model => SentenceModel.Get(options.Value.ModelPath);

    public float[][] Embed(IReadOnlyList<string> texts, CancellationToken cancellationToken) =>
        texts.Count == 0 ? [] : Model.Embed(texts, cancellationToken);

    /// <summary>What a paper's vector is made of: its title, then its abstract (of which the model reads about the first 200 words).</summary>
    public static string PaperText(string title, string abstractText) => abstractText.Length == 0 ? title : $"{title}. {abstractText}";
}

/// <summary>Loads the model while the options are validated, so start-up fails on it with every other bad setting (exit code 78).</summary>
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
            SentenceModel.Get(options.ModelPath);
            return ValidateOptionsResult.Success;
        }
        catch (ModelLoadException e)
        {
            return ValidateOptionsResult.Fail($"{MeaningOptions.Section}:ModelPath {e.Message}");
        }
    }
}
