-- One row per (subscriber, day): what that subscriber gets that day, and what became of it.

CREATE TABLE deliveries (
    id             bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    subscriber_id  bigint      NOT NULL REFERENCES subscribers (id) ON DELETE CASCADE,
    day            date        NOT NULL,
    -- The papers it carries, best first, each with the subscriber's topics that matched it:
    -- [{"paper_id": 1, "topics": ["depth estimation"]}, ...]
    papers         jsonb       NOT NULL,
    -- pending: waiting (again, after next_attempt_at); sending: claimed by a sender until claimed_until
    -- (a sender that died leaves it to be claimed again then); sent; failed: refused for good;
    -- skipped: the subscriber was no longer active when its turn came.
    status         text        NOT NULL DEFAULT 'pending'
                               CHECK (status IN ('pending', 'sending', 'sent', 'failed', 'skipped')),
    attempts       integer     NOT NULL DEFAULT 0,
    next_attempt_at timestamptz NOT NULL,
    claimed_by     text,
    claimed_until  timestamptz,
    last_error     text,
    message_id     text,
    created_at     timestamptz NOT NULL,
    sent_at        timestamptz,
    -- What makes a day idempotent: planning it twice adds nothing.
    UNIQUE (subscriber_id, day)
) WITH (fillfactor = 50);

-- The deliveries not finished yet (pending, or being sent): what senders scan. A delivery leaves
-- when it is sent, failed or skipped. Keeping this set out of the deliveries' own indexes means
-- no indexed column of a delivery ever changes, so claiming and recording are HOT updates
-- (fillfactor above leaves the room for them) instead of new index entries per message.
CREATE TABLE delivery_queue (
    delivery_id bigint PRIMARY KEY REFERENCES deliveries (id) ON DELETE CASCADE,
    day         date   NOT NULL
);

-- Permanent (5xx) refusals of a subscriber's digests; enough of them and the subscriber is bounced.
ALTER TABLE subscribers ADD COLUMN permanent_failures integer NOT NULL DEFAULT 0;
