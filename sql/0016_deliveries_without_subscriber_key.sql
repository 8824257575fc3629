-- Planning checked each new delivery's foreign key to subscribers: a key-share lock on the subscriber's row, which
-- writes that row (its page dirtied, a WAL record) for every delivery planned. In a slot, those are ~36,000 rows
-- scattered over the whole table at a million subscribers. The slots benchmark at 1,000,000 subscribers, without
-- the key: planning per slot median 1.55 s, where it was 2.05 s; the single run 40.0 s, where it was 43.8 s.
--
-- What the key did, done instead:
-- * Deleting a subscriber deletes their deliveries, as its ON DELETE CASCADE did (and the deliveries' own trigger
--   takes their queue and papers rows with them, 0015).
-- * No delivery is left behind for a subscriber deleted while a slot is being planned. The planner writes a batch
--   only for subscribers who still exist, and under a shared advisory lock that deleting a subscriber takes
--   exclusively here (Database/SubscriberDeletion.cs holds the same key). So a batch either commits before the
--   deletion looks for deliveries, which then finds and deletes its rows, or starts after the deletion committed,
--   and then no longer finds the subscriber. Batches do not wait for each other, only for a deletion in progress.
ALTER TABLE deliveries DROP CONSTRAINT deliveries_subscriber_id_fkey;

CREATE FUNCTION delete_subscriber_deliveries() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_advisory_xact_lock(hashtextextended('subscriptions.subscriber_deletion', 0));
    -- A statement of its own, so its snapshot comes after the lock: it sees every batch that committed before.
    DELETE FROM deliveries WHERE subscriber_id = OLD.id;
    RETURN NULL;
END
$$;

CREATE TRIGGER subscribers_delete_deliveries AFTER DELETE ON subscribers FOR EACH ROW EXECUTE FUNCTION delete_subscriber_deliveries();
