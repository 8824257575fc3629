using System.Globalization;
using System.Runtime.CompilerServices;

namespace Subscriptions.Tests.Infrastructure;

internal static class TestCulture
{
    /// <summary>
    /// Numbers in the service's messages are formatted in the current culture ("67,108,864"), and the tests read them in
    /// English: under LANG=de_DE they would read "67.108.864". The in-process apps run in the invariant culture.
    /// </summary>
    [ModuleInitializer]
    internal static void UseInvariantCulture()
    {
        CultureInfo.DefaultThreadCurrentCulture = CultureInfo.InvariantCulture;
        CultureInfo.DefaultThreadCurrentUICulture = CultureInfo.InvariantCulture;
        CultureInfo.CurrentCulture = CultureInfo.InvariantCulture;
        CultureInfo.CurrentUICulture = CultureInfo.InvariantCulture;
    }
}
