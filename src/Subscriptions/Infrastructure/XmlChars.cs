using System.Text;
using System.Xml;

namespace Subscriptions.Infrastructure;

internal static class XmlChars
{
    /// <summary>
    /// The text without what XML 1.0 forbids (the Atom feed is XML): C0 controls but tab and line ends, among them the NUL
    /// that PostgreSQL's text and jsonb refuse (a source's <c>\u0000</c>, an entity <c>&amp;#0;</c>, a file saved as
    /// UTF-16), U+FFFE, U+FFFF and unpaired surrogates. A paper holding one made the whole ingest fail, or the feeds that
    /// carried it (or a topic) answer 500.
    /// </summary>
    public static string WithoutInvalidCharacters(string text)
    {
        StringBuilder? kept = null; // made at the first character left out
        for (var i = 0; i < text.Length; i++)
        {
            if (i + 1 < text.Length && XmlConvert.IsXmlSurrogatePair(text[i + 1], text[i]))
            {
                kept?.Append(text, i, 2);
                i++;
            }
            else if (XmlConvert.IsXmlChar(text[i]))
            {
                kept?.Append(text[i]);
            }
            else
            {
                kept ??= new StringBuilder(text.Length).Append(text, 0, i);
            }
        }
        return kept?.ToString() ?? text;
    }

    public static bool IsValid(string text) => ReferenceEquals(WithoutInvalidCharacters(text), text);
}
