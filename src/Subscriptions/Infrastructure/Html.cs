using System.Buffers;
using System.Globalization;
using System.Text;
using System.Text.Encodings.Web;

namespace Subscriptions.Infrastructure;

/// <summary>The HTML of the emails this service sends (pages are Razor components): inline CSS, every value encoded.</summary>
internal static class Html
{
    public static string Encode(string? text) => HtmlEncoder.Default.Encode(text ?? "");

    /// <summary>
    /// Appends <paramref name="text"/> encoded as <see cref="Encode"/> encodes it, without a string of the result: a digest
    /// encodes ~30 values for each email, 20 of them its feedback links (~200 characters each).
    /// </summary>
    public static StringBuilder AppendEncoded(this StringBuilder html, ReadOnlySpan<char> text)
    {
        Span<char> encoded = stackalloc char[256];
        while (true)
        {
            var status = HtmlEncoder.Default.Encode(text, encoded, out var consumed, out var written, isFinalBlock: true);
            html.Append(encoded[..written]);
            if (status != OperationStatus.DestinationTooSmall)
            {
                return html;
            }
            text = text[consumed..];
        }
    }

    /// <summary>A complete page; <paramref name="body"/> must already be encoded.</summary>
    public static string Document(string title, string body) => Document(new StringBuilder(), title, page => page.Append(body)).ToString();

    /// <summary>
    /// A complete page written into <paramref name="page"/>, its body by <paramref name="body"/> (encoded as it writes):
    /// a digest's ~15,000 characters are written once, rather than copied from string to string.
    /// </summary>
    public static StringBuilder Document(StringBuilder page, string title, Action<StringBuilder> body)
    {
        var encodedTitle = Encode(title);
        page.Append(CultureInfo.InvariantCulture, $"""
            <!DOCTYPE html>
            <html lang="en">
            <head>
            <meta charset="utf-8">
            <meta name="viewport" content="width=device-width, initial-scale=1">
            <title>{encodedTitle}</title>
            </head>
            <body style="margin:0;padding:0;background:#f5f5f5;font-family:-apple-system,Segoe UI,Helvetica,Arial,sans-serif;color:#222;line-height:1.5">
            <main style="max-width:640px;margin:0 auto;padding:24px 16px;background:#ffffff">
            <h1 style="font-size:1.4em;margin-top:0">{encodedTitle}</h1>

            """);
        body(page);
        return page.Append("""

            </main>
            </body>
            </html>
            """);
    }
}
