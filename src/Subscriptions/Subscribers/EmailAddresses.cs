using System.Globalization;
using System.Text;
using MimeKit;

namespace Subscriptions.Subscribers;

/// <summary>
/// The one place an address is checked and made canonical, so that what is stored, compared and mailed
/// is the same however it was typed: Unicode NFC, the domain in lower-case U-labels whether it came as
/// U-labels or A-labels (IDNA), and RFC 5321's lengths. <see cref="Key"/> is what uniqueness is on.
/// </summary>
internal static class EmailAddresses
{
    public const int MaxLength = 254;
    private const int MaxLocalPartBytes = 64;

    private static readonly IdnMapping Idna = new() { UseStd3AsciiRules = true };

    private static readonly ParserOptions StrictAddresses = new()
    {
        AllowAddressesWithoutDomain = false,
        AllowUnquotedCommasInAddresses = false,
        AddressParserComplianceMode = RfcComplianceMode.Strict,
    };

    /// <summary>The canonical address, or what is wrong with it (worded to follow the field's name: "email is required").</summary>
    public static (string? Address, string? Problem) Canonicalize(string? input)
    {
        // Line breaks are refused wherever they are, before any trimming: they are how header injection starts.
        if (input is not null && input.Any(char.IsControl))
        {
            return (null, "must not contain line breaks or control characters");
        }
        if (string.IsNullOrWhiteSpace(input))
        {
            return (null, "is required");
        }
        var email = input.Trim(' ');
        if (!IsValidText(email))
        {
            return (null, "contains characters that are not valid text");
        }
        if (email.Any(IsInvisible))
        {
            return (null, "must not contain invisible or non-breaking characters (a copied address sometimes carries them)");
        }
        email = email.Normalize(NormalizationForm.FormC);
        if (email.Length > MaxLength)
        {
            return (null, $"must be at most {MaxLength} characters");
        }
        if (!MailboxAddress.TryParse(StrictAddresses, email, out var mailbox))
        {
            return (null, "is not an email address");
        }
        if (!string.IsNullOrEmpty(mailbox.Name) || mailbox.Route.Count > 0)
        {
            return (null, "must be the bare address, without a display name (name@example.org)");
        }
        var at = email.LastIndexOf('@');
        var localPart = email[..at];
        var domain = email[(at + 1)..];
        if (Encoding.UTF8.GetByteCount(localPart) > MaxLocalPartBytes)
        {
            return (null, $"must have at most {MaxLocalPartBytes} characters before the @");
        }
        if (!domain.Contains('.', StringComparison.Ordinal) || domain.StartsWith('[') || domain.EndsWith('.'))
        {
            return (null, "must have a full domain name (name@example.org)");
        }
        if (CanonicalDomain(domain) is not { } canonicalDomain)
        {
            return (null, "has a domain name that is not valid: labels of letters, digits and hyphens, at most 63 characters each, not starting or ending with a hyphen");
        }
        // What the parser read must be all that was typed: no comments, groups or second address.
        var parsed = mailbox.Address;
        var parsedAt = parsed.LastIndexOf('@');
        if (parsedAt < 0 || parsed[..parsedAt] != localPart || CanonicalDomain(parsed[(parsedAt + 1)..]) != canonicalDomain)
        {
            return (null, "must be a single address (name@example.org)");
        }
        // Folding can lengthen the domain (U+FB03 becomes "ffi").
        var canonical = $"{localPart}@{canonicalDomain}";
        return canonical.Length > MaxLength ? (null, $"must be at most {MaxLength} characters") : (canonical, null);
    }

    /// <summary>
    /// The domain checked label by label (letters, digits and hyphens, at most 63, no hyphen at either end)
    /// and folded to lower-case U-labels, whether it came as U-labels or A-labels (xn--…); null when invalid.
    /// </summary>
    private static string? CanonicalDomain(string domain)
    {
        try
        {
            return Idna.GetUnicode(Idna.GetAscii(domain.ToLowerInvariant()));
        }
        catch (ArgumentException)
        {
            return null;
        }
    }

    /// <summary>What two addresses must share to be the same subscriber: the canonical address, case-folded.</summary>
    public static string Key(string canonicalAddress) => canonicalAddress.ToLowerInvariant();

    private static bool IsValidText(string text)
    {
        for (var i = 0; i < text.Length; i++)
        {
            if (char.IsSurrogate(text[i]) && !(char.IsHighSurrogate(text[i]) && i + 1 < text.Length && char.IsLowSurrogate(text[++i])))
            {
                return false;
            }
        }
        return true;
    }

    private static bool IsInvisible(char c) => c != ' ' && CharUnicodeInfo.GetUnicodeCategory(c) is
        UnicodeCategory.SpaceSeparator or UnicodeCategory.Format or UnicodeCategory.LineSeparator or UnicodeCategory.ParagraphSeparator;
}
