namespace Subscriptions.Web.Pages;

/// <summary>The inline styles the pages share (the CSP allows inline styles only, no style sheets).</summary>
internal static class Styles
{
    public const string Field = "display:block;width:100%;box-sizing:border-box;padding:10px;font-size:1em;border:1px solid #999;border-radius:4px";
    public const string SecondaryButton = "padding:10px 18px;font-size:1em;background:#ffffff;color:#1a56db;border:1px solid #1a56db;border-radius:4px;cursor:pointer";
    public const string Button = "padding:10px 18px;font-size:1em;background:#1a56db;color:#ffffff;border:0;border-radius:4px;cursor:pointer";
}
