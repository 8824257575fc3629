-- Each subscriber's own delivery time (issue 15): an hour in an IANA time zone, daily or weekly.
-- A NULL time zone or hour means the operator's default (Digest:TimeZone, the hour of Digest:Schedule), which
-- is what every subscriber from before this migration gets, and whoever signs up without choosing.
ALTER TABLE subscribers
    ADD COLUMN time_zone     text     CHECK (length(time_zone) BETWEEN 1 AND 64),
    ADD COLUMN delivery_hour smallint CHECK (delivery_hour BETWEEN 0 AND 23),
    ADD COLUMN frequency     text     NOT NULL DEFAULT 'daily' CHECK (frequency IN ('daily', 'weekly')),
    -- ISO weekday of a weekly digest: 1 Monday … 7 Sunday.
    ADD COLUMN weekday       smallint CHECK (weekday BETWEEN 1 AND 7),
    ADD CONSTRAINT subscribers_weekly_has_weekday CHECK (frequency = 'daily' OR weekday IS NOT NULL);

-- The time zones chosen, which each slot reads (a few hundred at most, read by skipping through this index).
CREATE INDEX subscribers_time_zone ON subscribers (time_zone) WHERE status = 'active' AND time_zone IS NOT NULL;

-- The hourly slots planned, so that slots missed while every instance was down are planned once when one
-- comes back, and an operator can see what each slot did.
CREATE TABLE digest_slots (
    slot       timestamptz PRIMARY KEY,
    planned_at timestamptz NOT NULL,
    matched    bigint      NOT NULL,
    planned    bigint      NOT NULL
);
