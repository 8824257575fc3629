namespace Subscriptions.Database;

/// <summary>
/// The locks that keep deliveries from being planned or sent for a subscriber being deleted, now that deliveries have no
/// foreign key to subscribers (sql/0016, 0017 and 0025: the deletion's trigger takes both exclusively, with these keys, the
/// subscriber's first, before deleting a subscriber's deliveries).
/// </summary>
internal static class SubscriberDeletion
{
    /// <summary>
    /// Taken by each batch of deliveries planned, in its transaction before the insert (which then sees every deletion
    /// committed before it): batches share it, and wait only for a deletion in progress.
    /// </summary>
    public const string WaitForDeletions = "SELECT pg_advisory_xact_lock_shared(hashtextextended('subscriptions.subscriber_deletion', 0))";

    /// <summary>
    /// Taken by a sender's last check before an email to subscriber <c>$1</c> goes, until its outcome is recorded: the
    /// subscriber's deletion (sql/0025) takes it exclusively, so it waits for that send in flight, and a check that
    /// starts while the deletion runs waits for it and then finds no delivery.
    /// </summary>
    public const string WaitForDeletionOfOne = "SELECT pg_advisory_xact_lock_shared(hashtext('subscriptions.subscriber_sending'), ($1 % 2147483648)::integer)";
}
