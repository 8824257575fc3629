-- The last check before a digest goes held a key-share lock on the subscriber's row until the outcome was recorded,
-- so that erasing the subscriber waited for a send in flight. Such a lock writes the row (its page dirtied, a WAL
-- record): once for every email sent. The check now takes an advisory lock of that one subscriber, shared, which
-- deleting the subscriber takes exclusively here, after the planners' lock of 0016. (Keyed by the subscriber, so an
-- erasure waits only for that subscriber's send, not for every message in flight.) Ids beyond the 32-bit key fold onto
-- it; two subscribers who share a key at most wait for each other's send.
CREATE OR REPLACE FUNCTION delete_subscriber_deliveries() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_advisory_xact_lock(hashtextextended('subscriptions.subscriber_deletion', 0));
    PERFORM pg_advisory_xact_lock(hashtext('subscriptions.subscriber_sending'), (OLD.id % 2147483648)::integer);
    -- A statement of its own, so its snapshot comes after the locks: it sees every batch and send recorded before.
    DELETE FROM deliveries WHERE subscriber_id = OLD.id;
    RETURN NULL;
END
$$;
