-- 0017 took the planners' lock (exclusive) before the lock of the subscriber's send in flight: an erasure waiting for a
-- slow send (up to the relay's timeout) held up every batch of deliveries being planned meanwhile, and, once the
-- erasure hit its command timeout and rolled back, all of it for nothing. The send's lock comes first now: the erasure
-- waits for the send alone, then takes the planners' lock, held as before to the end of its transaction.
-- No cycle: a sender holds only its subscriber's lock, and a planner only the planners'.
CREATE OR REPLACE FUNCTION delete_subscriber_deliveries() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_advisory_xact_lock(hashtext('subscriptions.subscriber_sending'), (OLD.id % 2147483648)::integer);
    PERFORM pg_advisory_xact_lock(hashtextextended('subscriptions.subscriber_deletion', 0));
    -- A statement of its own, so its snapshot comes after the locks: it sees every batch and send recorded before.
    DELETE FROM deliveries WHERE subscriber_id = OLD.id;
    RETURN NULL;
END
$$;
