using System.Text;
using Subscriptions.Infrastructure;

namespace Subscriptions.Tests;

/// <summary>The digest's HTML encodes values into its builder (<see cref="Html.AppendEncoded"/>) as <see cref="Html.Encode"/> does into a string.</summary>
public sealed class HtmlEncodingTests
{
    [Theory]
    [InlineData("")]
    [InlineData("plain words")]
    [InlineData("https://papers.example/feedback?token=AbC-_12&paper=12&more=1")]
    [InlineData("<script>alert(\"x\")</script> & 'quotes'")]
    [InlineData("Kurt Gödel — naïve · 日本語 😀")]
    [InlineData("😀")]
    public void AppendEncodedWritesWhatEncodeReturns(string text)
    {
        // Once, and repeated past the 256 characters encoded at a time, so that the value is encoded in several pieces and
        // a piece can end anywhere: inside an entity, between the halves of a surrogate pair.
        foreach (var value in new[] { text, string.Concat(Enumerable.Repeat(text, 300 / Math.Max(text.Length, 1) + 3)), "x" + string.Concat(Enumerable.Repeat(text, 150)) })
        {
            var builder = new StringBuilder("<p>").AppendEncoded(value).Append("</p>");

            Assert.Equal($"<p>{Html.Encode(value)}</p>", builder.ToString());
        }
    }
}
