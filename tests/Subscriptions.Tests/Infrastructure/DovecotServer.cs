using System.Diagnostics;
using System.Globalization;
using MailKit;
using MailKit.Net.Imap;
using MailKit.Search;
using MailKit.Security;

namespace Subscriptions.Tests.Infrastructure;

/// <summary>
/// A real IMAP server for a test class: Debian's Dovecot (<c>dovecot-imapd</c>), started unprivileged with a
/// configuration of its own in a temporary folder, listening on 127.0.0.1 on a free port, one user whose
/// mail is a Maildir in that folder. Dovecot's login and mail processes refuse to run as root, so as root
/// they run as the package's <c>dovenull</c> and <c>dovecot</c> users; as anyone else, as that user.
/// </summary>
public sealed class DovecotServer : IAsyncLifetime
{
    public const string Username = "bounces";
    public const string Password = "bounce-mailbox-password";
    private readonly string _root = Path.Combine(Path.GetTempPath(), $"subscriptions-dovecot-{Guid.NewGuid():N}"[..40]);

    private readonly string? _folderPrefix;

    public DovecotServer()
    {
    }

    /// <summary>A server that keeps every folder under <paramref name="folderPrefix"/>, as Courier does and cPanel sets Dovecot up (<c>INBOX.</c>).</summary>
    internal DovecotServer(string? folderPrefix) => _folderPrefix = folderPrefix;

    private string Namespace => _folderPrefix is null ? "" : $$"""
        namespace inbox {
          inbox = yes
          prefix = {{_folderPrefix}}
          separator = .
        }
        """;
    private Process? _process;
    private string _inbox = "";

    public int Port { get; private set; }

    /// <summary>The service's <c>Bounces:Imap:*</c> settings for this server.</summary>
    public Dictionary<string, string?> Settings => new()
    {
        ["Bounces:Imap:Host"] = "127.0.0.1",
        ["Bounces:Imap:Port"] = Port.ToString(CultureInfo.InvariantCulture),
        ["Bounces:Imap:Security"] = "None",
        ["Bounces:Imap:Username"] = Username,
        ["Bounces:Imap:Password"] = Password,
    };

    public async Task InitializeAsync()
    {
        Port = LocalPrograms.FreePort();
        var mail = Path.Combine(_root, "mail");
        Directory.CreateDirectory(mail);
        var isRoot = LocalPrograms.IsRoot;
        var (loginUser, internalUser, mailUser) = isRoot ? ("dovenull", "dovecot", "dovecot") : (Environment.UserName, Environment.UserName, Environment.UserName);
        if (isRoot)
        {
            // The mail processes run as dovecot and must be able to write the Maildir.
            LocalPrograms.Run("chown", "-R", "dovecot:dovecot", mail);
        }
        var config = Path.Combine(_root, "dovecot.conf");
        await File.WriteAllTextAsync(config, $$"""
            protocols = imap
            listen = 127.0.0.1
            base_dir = {{_root}}/run
            state_dir = {{_root}}/state
            instance_name = subscriptions-test-{{Port}}
            log_path = {{_root}}/dovecot.log
            ssl = no
            disable_plaintext_auth = no
            auth_mechanisms = plain login
            default_login_user = {{loginUser}}
            default_internal_user = {{internalUser}}
            first_valid_uid = 1
            mail_location = maildir:{{mail}}/%u
            {{Namespace}}
            service imap-login {
              inet_listener imap {
                address = 127.0.0.1
                port = {{Port}}
              }
              inet_listener imaps {
                port = 0
              }
            }
            passdb {
              driver = static
              args = password={{Password}}
            }
            userdb {
              driver = static
              args = uid={{mailUser}} gid={{mailUser}} home={{_root}}/home/%u
            }

            """);

        var start = new ProcessStartInfo(LocalPrograms.Find("dovecot", "dovecot-imapd")) { RedirectStandardOutput = true, RedirectStandardError = true };
        foreach (var argument in new[] { "-F", "-c", config })
        {
            start.ArgumentList.Add(argument);
        }
        _process = Process.Start(start) ?? throw new InvalidOperationException("Could not start dovecot");
        await LocalPrograms.WaitUntilListeningAsync(_process, Port, async () => $"{await _process.StandardError.ReadToEndAsync()}\n{Log()}");

        // The first login makes the user's Maildir, owned by the user the mail processes run as.
        using var client = await ConnectAsync();
        await client.Inbox.OpenAsync(FolderAccess.ReadOnly);
        await client.DisconnectAsync(quit: true);
        _inbox = Path.Combine(mail, Username);
    }

    public async Task DisposeAsync()
    {
        if (_process is { HasExited: false })
        {
            _process.Kill(entireProcessTree: true);
            await _process.WaitForExitAsync();
        }
        _process?.Dispose();
        try
        {
            Directory.Delete(_root, recursive: true);
        }
        catch (IOException)
        {
            // A stopped server's files left in /tmp are harmless.
        }
    }

    /// <summary>
    /// Delivers a message file into the INBOX as a mail server's local delivery does: byte for byte into the
    /// Maildir (written to <c>tmp/</c>, then renamed into <c>new/</c>), malformed files included. Dovecot takes the file's
    /// time as the message's arrival (its IMAP internal date): <paramref name="receivedAt"/>, or now.
    /// </summary>
    public void Deliver(string file, DateTimeOffset? receivedAt = null)
    {
        var name = $"{DateTimeOffset.UtcNow.ToUnixTimeSeconds()}.{Guid.NewGuid():N}.subscriptions-test";
        var temporary = Path.Combine(_inbox, "tmp", name);
        File.Copy(file, temporary);
        if (receivedAt is { } time)
        {
            File.SetLastWriteTimeUtc(temporary, time.UtcDateTime);
        }
        if (LocalPrograms.IsRoot)
        {
            LocalPrograms.Run("chown", "dovecot:dovecot", temporary);
        }
        File.Move(temporary, Path.Combine(_inbox, "new", name));
    }

    /// <summary>Delivers a message file with some of its text replaced.</summary>
    public void Deliver(string file, params (string Old, string New)[] replacements)
    {
        var text = replacements.Aggregate(File.ReadAllText(file), (current, replacement) => current.Replace(replacement.Old, replacement.New, StringComparison.Ordinal));
        DeliverText(text);
    }

    /// <summary>
    /// A Postfix-style DSN as it arrives in the bounce mailbox, addressed to <paramref name="returnPath"/>: with no returned
    /// message, or with the headers of one whose Message-ID is <paramref name="returnedMessageId"/>.
    /// </summary>
    public void DeliverBounce(string returnPath, string finalRecipient, string? returnedMessageId = null, string status = "5.1.1", string action = "failed")
    {
        var returned = returnedMessageId is null ? "" : $"""
            --dsn
            Content-Type: text/rfc822-headers

            From: Trending Papers <papers@subscriptions.test>
            To: {finalRecipient}
            Subject: 1 trending paper on lidar
            Message-ID: <{returnedMessageId}>

            """;
        DeliverText($"""
            Return-Path: <>
            Delivered-To: {returnPath}
            From: MAILER-DAEMON@forwarder.example (Mail Delivery System)
            To: {returnPath}
            Subject: VERP bounce for {finalRecipient}
            Date: Wed, 25 Nov 2026 08:00:00 +0000
            Message-ID: <{Guid.NewGuid():N}@forwarder.example>
            MIME-Version: 1.0
            Content-Type: multipart/report; report-type=delivery-status; boundary="dsn"

            --dsn
            Content-Type: text/plain

            The mail system could not deliver your message to {finalRecipient}.

            --dsn
            Content-Type: message/delivery-status

            Reporting-MTA: dns; forwarder.example

            Final-Recipient: rfc822; {finalRecipient}
            Action: {action}
            Status: {status}
            Diagnostic-Code: smtp; 550 {status} user unknown

            {returned}
            --dsn--

            """.ReplaceLineEndings("\r\n"));
    }

    private void DeliverText(string text)
    {
        var file = Path.Combine(Path.GetTempPath(), $"subscriptions-mail-{Guid.NewGuid():N}.eml");
        try
        {
            File.WriteAllText(file, text);
            Deliver(file);
        }
        finally
        {
            File.Delete(file);
        }
    }

    /// <summary>The subjects of the messages in a folder (empty when the folder does not exist).</summary>
    public async Task<IReadOnlyList<string>> SubjectsAsync(string folder)
    {
        using var client = await ConnectAsync();
        IMailFolder target;
        try
        {
            target = await client.GetFolderAsync(folder);
        }
        catch (FolderNotFoundException)
        {
            return [];
        }
        await target.OpenAsync(FolderAccess.ReadOnly);
        var subjects = new List<string>();
        foreach (var summary in await target.FetchAsync(await target.SearchAsync(SearchQuery.All), MessageSummaryItems.Envelope))
        {
            subjects.Add(summary.Envelope?.Subject ?? "");
        }
        await client.DisconnectAsync(quit: true);
        return subjects;
    }

    public string Log() => File.Exists(Path.Combine(_root, "dovecot.log")) ? File.ReadAllText(Path.Combine(_root, "dovecot.log")) : "";

    private async Task<ImapClient> ConnectAsync()
    {
        var client = new ImapClient();
        await client.ConnectAsync("127.0.0.1", Port, SecureSocketOptions.None);
        await client.AuthenticateAsync(Username, Password);
        return client;
    }
}
