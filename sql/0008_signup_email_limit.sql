-- Signup emails sent to one subscriber in the last day are counted at every signup of that address
-- (at most two a day, however many signups arrive): an index to count them without a scan.
CREATE INDEX email_outbox_subscriber_created ON email_outbox (subscriber_id, created_at);
