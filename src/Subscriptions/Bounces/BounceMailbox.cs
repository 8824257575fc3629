using System.Collections.Concurrent;
using System.Diagnostics.Metrics;
using MailKit;
using MailKit.Net.Imap;
using MailKit.Search;
using Microsoft.Extensions.Options;
using MimeKit;
using Npgsql;
using Subscriptions.Database;
using Subscriptions.Email;
using Subscriptions.Infrastructure;

namespace Subscriptions.Bounces;

/// <summary>What a round of the bounce mailbox did; <c>Skipped</c> when another instance was reading it.</summary>
internal sealed record MailboxRound(int Processed, int Unreadable, IReadOnlyList<string> Suppressed, int Pruned = 0, bool Skipped = false);

/// <summary>
/// Reads the bounce mailbox over IMAP: the reports it can read are recorded, one transaction for each chunk of
/// <see cref="MessagesPerTransaction"/> messages, and then moved to <c>Bounces:ProcessedFolder</c>. A report read
/// again because its move failed, or the process stopped before it, is not recorded again. A message it cannot read
/// stays where it is for a person to look at; it is logged and counted once, and not fetched again. Reports that arrived
/// longer ago than <c>Bounces:KeepProcessed</c> are deleted from the processed folder.
/// </summary>
internal sealed class BounceMailbox(
    NpgsqlDataSource dataSource, SuppressionStore store, ReturnPaths returnPaths, MessageIds messageIds, IOptions<BouncesOptions> options, IMeterFactory meters,
    TimeProvider time, ILogger<BounceMailbox> logger)
{
    private const long ReaderLockKey = 0x5375_6273_426F_756E; // "SubsBoun"
    private const int MessagesPerTransaction = 200;

    /// <summary>
    /// The largest message read as a report: a report returns at most the headers or the whole of one of our emails (~25 KB),
    /// but anyone can write to this mailbox, and a message is read whole into memory.
    /// </summary>
    public const int MaxReportBytes = 2 * 1024 * 1024;
    private readonly ConcurrentDictionary<(uint Validity, uint Uid), bool> _unreadable = new();
    private readonly Counter<long> _unreadableCounter = meters.Create("Subscriptions.Bounces")
        .CreateCounter<long>("subscriptions_bounce_messages_unreadable", description: "Messages in the bounce mailbox that are not a readable DSN or ARF report");

    /// <summary>How many distinct messages were found unreadable since the process started.</summary>
    public int UnreadableCount => _unreadable.Count;

    /// <summary>Reads the mailbox once; returns at once, having done nothing, while another instance is reading it.</summary>
    public async Task<MailboxRound> ProcessAsync(CancellationToken cancellationToken)
    {
        // One reader at a time across instances: two reading the same mailbox would record each report twice.
        await using var reading = await RoundLock.TryTakeAsync(dataSource, ReaderLockKey, cancellationToken);
        if (reading is null)
        {
            return new MailboxRound(0, 0, [], Skipped: true);
        }
        return await ReadMailboxAsync(cancellationToken);
    }

    private async Task<MailboxRound> ReadMailboxAsync(CancellationToken cancellationToken)
    {
        var settings = options.Value;
        using var client = new ImapClient { Timeout = (int)TimeSpan.FromSeconds(30).TotalMilliseconds };
        await client.ConnectAsync(settings.Imap.Host!, settings.Imap.Port, settings.Imap.Security, cancellationToken);
        ClearTextLogin.Refuse(client, settings.Imap.Security, $"{settings.Imap.Host}:{settings.Imap.Port}", "Bounces:Imap:Password", "server",
            "Bounces:Imap:Security", tlsPort: 993);
        // Validated at start: a host comes with a username and password.
        await client.AuthenticateAsync(settings.Imap.Username!, settings.Imap.Password!, cancellationToken);

        var inbox = await client.GetFolderAsync(settings.Imap.Folder, cancellationToken);
        await inbox.OpenAsync(FolderAccess.ReadWrite, cancellationToken);
        var processedFolder = await ProcessedFolderAsync(client, settings.ProcessedFolder, cancellationToken);

        var mailbox = $"{settings.Imap.Username}@{settings.Imap.Host}/{inbox.FullName}";
        var inFolder = await inbox.SearchAsync(SearchQuery.All, cancellationToken);
        await store.ForgetReportsGoneFromAsync(mailbox, inbox.UidValidity, [.. inFolder.Select(uid => uid.Id)], cancellationToken);
        var unseen = inFolder.Where(uid => !_unreadable.ContainsKey((inbox.UidValidity, uid.Id)));
        int processed = 0, newlyUnreadable = 0;
        var suppressed = new List<string>();
        // In chunks, so a backlog of thousands is neither held in memory at once nor recorded in one transaction.
        foreach (var chunk in unseen.Chunk(MessagesPerTransaction))
        {
            var read = new List<UniqueId>();
            var events = new List<BounceEvent>();
            // The server may add FETCH lines of its own (another client's flag changes, with no UID): only the chunk's count.
            var sizes = new Dictionary<UniqueId, uint?>();
            foreach (var summary in await inbox.FetchAsync(chunk, new FetchRequest(MessageSummaryItems.UniqueId | MessageSummaryItems.Size), cancellationToken))
            {
                if (summary.UniqueId.IsValid)
                {
                    sizes.TryAdd(summary.UniqueId, summary.Size);
                }
            }
            foreach (var uid in chunk)
            {
                if (!sizes.TryGetValue(uid, out var fetchedSize))
                {
                    continue; // expunged since the search (by a person, or another client): nothing to read
                }
                var found = fetchedSize is > MaxReportBytes and var size
                    ? LeftAsTooLarge(uid, size)
                    : await ReadAsync(inbox, uid, cancellationToken);
                if (found is not null)
                {
                    read.Add(uid);
                    var report = new MailboxMessage(mailbox, inbox.UidValidity, uid.Id);
                    events.AddRange(found.Select(bounce => bounce with { Report = report }));
                }
                else if (_unreadable.TryAdd((inbox.UidValidity, uid.Id), true))
                {
                    newlyUnreadable++;
                    _unreadableCounter.Add(1);
                }
            }
            var outcome = await store.RecordAsync(events, SuppressionStore.ImapSource, cancellationToken);
            if (read.Count > 0)
            {
                await inbox.MoveToAsync(read, processedFolder, cancellationToken);
            }
            processed += read.Count;
            suppressed.AddRange(outcome.Suppressed);
        }
        var pruned = settings.KeepProcessed == TimeSpan.Zero ? 0 : await PruneAsync(client, processedFolder, settings.KeepProcessed, cancellationToken);
        await client.DisconnectAsync(quit: true, cancellationToken);
        return new MailboxRound(processed, newlyUnreadable, suppressed, pruned);
    }

    /// <summary>Deletes the reports that arrived (their IMAP internal date, a day at a time) before <paramref name="keep"/> ago.</summary>
    private async Task<int> PruneAsync(ImapClient client, IMailFolder processedFolder, TimeSpan keep, CancellationToken cancellationToken)
    {
        await processedFolder.OpenAsync(FolderAccess.ReadWrite, cancellationToken);
        var old = await processedFolder.SearchAsync(SearchQuery.DeliveredBefore((time.GetUtcNow() - keep).UtcDateTime), cancellationToken);
        if (old.Count == 0)
        {
            return 0;
        }
        await processedFolder.AddFlagsAsync(old, MessageFlags.Deleted, silent: true, cancellationToken);
        // Without UIDPLUS a server can only expunge every message flagged deleted in the folder: in this one, ours.
        if (client.Capabilities.HasFlag(ImapCapabilities.UidPlus))
        {
            await processedFolder.ExpungeAsync(old, cancellationToken);
        }
        else
        {
            await processedFolder.ExpungeAsync(cancellationToken);
        }
        return old.Count;
    }

    private IReadOnlyList<BounceEvent>? LeftAsTooLarge(UniqueId uid, uint? size)
    {
        logger.LogWarning("Left message {Uid} ({Size} bytes) in the bounce mailbox: larger than any report ({Limit} bytes), so not read", uid, size, MaxReportBytes);
        return null;
    }

    private async Task<IReadOnlyList<BounceEvent>?> ReadAsync(IMailFolder inbox, UniqueId uid, CancellationToken cancellationToken)
    {
        MimeMessage message;
        try
        {
            message = await inbox.GetMessageAsync(uid, cancellationToken);
        }
        catch (FormatException e)
        {
            logger.LogWarning("Left message {Uid} in the bounce mailbox: it is not a message MimeKit can parse ({Error})", uid, e.Message);
            return null;
        }
        using var read = message;
        var events = BounceReports.Read(message);
        if (events is null)
        {
            logger.LogWarning("Left message {Uid} ({Subject}, from {FromDomain}) in the bounce mailbox: it is not a delivery status notification or abuse report that can be read",
                uid, message.Subject, SenderDomain(message));
            return null;
        }
        // Anyone can write to this mailbox. A report is about an email of ours when the return path it came back to (VERP)
        // or the Message-ID it returns carries our MAC: then it is about that email's recipient, whatever address it names.
        // Otherwise only the address it names is left, and that is believed only without VERP (where every true report
        // comes back to a return path of its own), and only for a subscriber's address.
        var sent = returnPaths.SentEmailOf(message) ?? events.Select(bounce => messageIds.OfMessageId(bounce.OriginalMessageId)).FirstOrDefault(found => found is not null);
        if (sent is null && returnPaths.IsEnabled && events.Count > 0)
        {
            logger.LogWarning("Message {Uid} ({Subject}, from {FromDomain}) in the bounce mailbox came back to no return path of ours and returns no Message-ID " +
                "of ours: the addresses it names are not acted on", uid, message.Subject, SenderDomain(message));
        }
        return [.. events.Select(bounce => sent is not null
            ? bounce with { Sent = sent, Recipient = null }
            : bounce with { Recipient = returnPaths.IsEnabled ? null : bounce.Recipient, RecipientMustBeSubscriber = true })];
    }

    /// <summary>
    /// The domain the message came from, not the address: an out-of-office reply comes from the subscriber, and logs outlive
    /// an erasure. The UID finds the message in the mailbox.
    /// </summary>
    private static string SenderDomain(MimeMessage message) =>
        message.From.Mailboxes.FirstOrDefault() is { Domain: { Length: > 0 } domain } ? domain : "no sender";

    private static async Task<IMailFolder> ProcessedFolderAsync(ImapClient client, string name, CancellationToken cancellationToken)
    {
        try
        {
            return await client.GetFolderAsync(name, cancellationToken);
        }
        catch (FolderNotFoundException)
        {
            var root = client.GetFolder(client.PersonalNamespaces[0]);
            return await root.CreateAsync(name, isMessageFolder: true, cancellationToken)
                ?? throw new InvalidOperationException($"The IMAP server did not create the folder {name}.");
        }
    }
}

/// <summary>Reads the bounce mailbox every <c>Bounces:PollInterval</c>.</summary>
internal sealed class BounceMailboxSignal : WakeSignal;

internal sealed class BounceMailboxWorker(BounceMailbox mailbox, BounceMailboxSignal signal, IOptions<BouncesOptions> options, ILogger<BounceMailboxWorker> logger)
    : PollingWorker(signal, logger)
{
    protected override TimeSpan PollInterval => options.Value.PollInterval;

    protected override async Task<bool> WorkAsync(CancellationToken stoppingToken)
    {
        var round = await mailbox.ProcessAsync(stoppingToken);
        if (round.Processed > 0 || round.Unreadable > 0 || round.Pruned > 0)
        {
            logger.LogInformation("Bounce mailbox: {Processed} report(s) processed, {Unreadable} new unreadable message(s), {Suppressed} address(es) suppressed, " +
                "{Pruned} old report(s) deleted from the processed folder",
                round.Processed, round.Unreadable, round.Suppressed.Count, round.Pruned);
        }
        return !round.Skipped;
    }
}
