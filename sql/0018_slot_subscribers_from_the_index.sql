-- A slot reads its ~4 % of the subscribers through subscribers_delivery_time (0014); their rows are scattered over
-- the whole table (people choose their hour and zone whenever they sign up), so every slot visited nearly every page
-- of it. The index now carries every column the slot's query reads, so the query is answered from the index alone
-- (an index-only scan, where the visibility map says the pages are all-visible, as autovacuum keeps a table that
-- changes slowly). Measured at 1,000,000 subscribers, with the topics' change below: the 24 slots took 21.8 s
-- instead of 24.5-24.9 s, the single run 21.2 s instead of 22.6 s (README, Slots benchmark). A change of any of these
-- columns is no longer a HOT update; they change rarely (preferences, status). Built without CONCURRENTLY (each
-- migration runs in a transaction): signups wait for the build, 1.8 s for this whole script at 1,000,000 subscribers
-- and 3,000,000 topics on the development machine.
CREATE INDEX subscribers_delivery_time_covering ON subscribers ((coalesce(time_zone, '')), (coalesce(delivery_hour, -1)))
    INCLUDE (id, email, email_key, max_papers, frequency, weekday, status, time_zone, delivery_hour)
    WHERE status = 'active';
DROP INDEX subscribers_delivery_time;
ALTER INDEX subscribers_delivery_time_covering RENAME TO subscribers_delivery_time;

-- The same for each subscriber's topics, read with them by (subscriber_id, position): their text comes with the key.
ALTER TABLE topics DROP CONSTRAINT topics_pkey, ADD PRIMARY KEY (subscriber_id, position) INCLUDE (text);
