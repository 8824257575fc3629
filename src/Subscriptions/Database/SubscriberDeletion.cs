namespace Subscriptions.Database;

/// <summary>
/// The lock that keeps deliveries from being planned for a subscriber being deleted, now that deliveries have no foreign
/// key to subscribers (sql/0016, whose trigger takes it exclusively, with this key, before deleting a subscriber's deliveries).
/// </summary>
internal static class SubscriberDeletion
{
    /// <summary>
    /// Taken by each batch of deliveries planned, in its transaction before the insert (which then sees every deletion
    /// committed before it): batches share it, and wait only for a deletion in progress.
    /// </summary>
    public const string WaitForDeletions = "SELECT pg_advisory_xact_lock_shared(hashtextextended('subscriptions.subscriber_deletion', 0))";
}
