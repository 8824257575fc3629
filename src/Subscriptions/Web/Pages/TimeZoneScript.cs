using System.Security.Cryptography;
using System.Text;

namespace Subscriptions.Web.Pages;

/// <summary>
/// The one script any page runs: it fills an empty <c>timeZone</c> field with the browser's IANA time zone. Inline, and
/// allowed by its hash in the Content-Security-Policy (so no other script can run); without it the field stays empty
/// and the operator's <c>Digest:TimeZone</c> applies.
/// </summary>
internal static class TimeZoneScript
{
    public const string Code =
        "(function(){var f=document.getElementById('timeZone');if(f&&!f.value){try{f.value=Intl.DateTimeFormat().resolvedOptions().timeZone||'';}catch(e){}}})();";

    public static readonly string Tag = $"<script>{Code}</script>";

    public static readonly string CspSource = $"'sha256-{Convert.ToBase64String(SHA256.HashData(Encoding.UTF8.GetBytes(Code)))}'";
}
