-- Each slot reads only its own subscribers (issue 15): an index on the delivery time as a slot looks it up.
-- A NULL time zone or hour (the operator's default, which can change) is indexed as '' and -1, values no
-- subscriber can hold, so a slot asks for them by equality like any other zone and hour.
CREATE INDEX subscribers_delivery_time ON subscribers ((coalesce(time_zone, '')), (coalesce(delivery_hour, -1)))
    WHERE status = 'active';

-- The papers of each delivery, as ids, for "was this paper planned for them before?" (asked for every subscriber
-- of every slot). Read from deliveries, that lookup fetched a wide row (jsonb, and fillfactor 50 for its sends)
-- per subscriber from a table too large to stay cached; this one is a tenth of its size and never updated.
CREATE TABLE delivery_papers (
    subscriber_id bigint   NOT NULL,
    day           date     NOT NULL,
    paper_ids     bigint[] NOT NULL,
    PRIMARY KEY (subscriber_id, day),
    FOREIGN KEY (subscriber_id, day) REFERENCES deliveries (subscriber_id, day) ON DELETE CASCADE
);

INSERT INTO delivery_papers (subscriber_id, day, paper_ids)
SELECT subscriber_id, day, ARRAY(SELECT (paper ->> 'paper_id')::bigint FROM jsonb_array_elements(papers) AS paper)
FROM deliveries;
