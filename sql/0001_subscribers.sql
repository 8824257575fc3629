-- Subscribers, their topics, and the queue of transactional emails (confirmations and notices).

CREATE TABLE subscribers (
    id                      bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    email                   text        NOT NULL CHECK (length(email) BETWEEN 3 AND 254),
    status                  text        NOT NULL CHECK (status IN ('pending', 'active', 'unsubscribed', 'bounced')),
    -- Random per subscription. Unsubscribe and preference links are signed over it, so signing up
    -- again after leaving makes every link of the earlier subscription stop working.
    subscription_key        bytea       NOT NULL CHECK (length(subscription_key) = 16),
    -- The nonce signed into the current confirmation link, and when that link stops working.
    confirmation_nonce      bytea       CHECK (length(confirmation_nonce) = 16),
    confirmation_expires_at timestamptz,
    max_papers              integer     CHECK (max_papers BETWEEN 1 AND 50),
    created_at              timestamptz NOT NULL,
    updated_at              timestamptz NOT NULL,
    confirmed_at            timestamptz,
    unsubscribed_at         timestamptz
);

-- Addresses compare case-insensitively.
CREATE UNIQUE INDEX subscribers_email_key ON subscribers (lower(email));
CREATE INDEX subscribers_active ON subscribers (id) WHERE status = 'active';

CREATE TABLE topics (
    subscriber_id bigint  NOT NULL REFERENCES subscribers (id) ON DELETE CASCADE,
    position      integer NOT NULL CHECK (position >= 0),
    text          text    NOT NULL CHECK (length(text) BETWEEN 1 AND 200),
    PRIMARY KEY (subscriber_id, position)
);

-- What a topic searches for. Signup validation and matching both go through this function, so
-- a topic is "searchable" by exactly the rules that later match it against papers.
CREATE FUNCTION topic_query(topic text) RETURNS tsquery
    LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE
    RETURN websearch_to_tsquery('english', topic);

CREATE TABLE email_outbox (
    id              bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    subscriber_id   bigint      NOT NULL REFERENCES subscribers (id) ON DELETE CASCADE,
    kind            text        NOT NULL CHECK (kind IN ('confirmation', 'already_subscribed')),
    status          text        NOT NULL DEFAULT 'pending'
                                CHECK (status IN ('pending', 'sent', 'failed', 'superseded')),
    attempts        integer     NOT NULL DEFAULT 0,
    next_attempt_at timestamptz NOT NULL,
    last_error      text,
    message_id      text,
    created_at      timestamptz NOT NULL,
    sent_at         timestamptz
);

CREATE INDEX email_outbox_due ON email_outbox (next_attempt_at, id) WHERE status = 'pending';
CREATE INDEX email_outbox_subscriber ON email_outbox (subscriber_id) WHERE status = 'pending';
