using MailKit;
using MailKit.Security;

namespace Subscriptions.Email;

/// <summary>
/// A login to a mail server (the SMTP relay, the bounce mailbox) only over TLS, unless the setting says otherwise: with
/// <c>Auto</c> on a port but the implicit-TLS one, TLS is STARTTLS when the server offers it, and someone on the path can
/// strike the offer out; the password would then go in the clear. Only <c>Security=None</c> says that is meant.
/// </summary>
internal static class ClearTextLogin
{
    /// <summary>Throws <see cref="AuthenticationException"/>, naming the settings to check, when <paramref name="client"/> is not secure.</summary>
    public static void Refuse(
        IMailService client, SecureSocketOptions security, string server, string passwordSetting, string serverKind, string securitySetting, int tlsPort)
    {
        if (!client.IsSecure && security != SecureSocketOptions.None)
        {
            throw new AuthenticationException(
                $"{server} offered no TLS (STARTTLS), and {passwordSetting} is not sent in the clear. " +
                $"Check the {serverKind}'s port and {securitySetting} (StartTls, or SslOnConnect on {tlsPort}), or set {securitySetting}=None to send it unencrypted.");
        }
    }
}
