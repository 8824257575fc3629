-- The console's dashboard reads the deliveries of its last days (counts per day, failures, today's papers); with only the
-- (subscriber_id, day) key it scanned the whole table, which is never pruned (about 200 MB a day at 100,000 subscribers), on
-- every page view. A day never changes once written, so this index leaves the claims' and outcomes' updates HOT.
-- (A BRIN index was tried first: with 120 days of 20,000 deliveries PostgreSQL still chose the whole table over it.)
CREATE INDEX deliveries_day ON deliveries (day);
