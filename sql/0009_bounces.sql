-- Bounces and complaints, and the addresses that get no email at all.

-- Every bounce or complaint received (bounce mailbox or webhook), by address key (the canonical,
-- case-folded address, as subscribers.email_key: Subscribers/EmailAddresses.cs). Soft
-- bounces are counted from here: enough of them within Bounces:SoftBounceWindow suppress the address.
CREATE TABLE bounce_events (
    id          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    email       text        NOT NULL,
    kind        text        NOT NULL CHECK (kind IN ('hard', 'soft', 'complaint')),
    status      text,
    source      text        NOT NULL CHECK (source IN ('imap', 'webhook')),
    received_at timestamptz NOT NULL
);

CREATE INDEX bounce_events_soft ON bounce_events (email, received_at) WHERE kind = 'soft';

-- Addresses no email goes to (digests, confirmations, notices), whatever the subscriber's status,
-- until an operator lifts it (`suppressions remove`). Keyed like subscribers: by email_key.
CREATE TABLE suppressions (
    email      text        PRIMARY KEY,
    reason     text        NOT NULL CHECK (reason IN ('hard_bounce', 'soft_bounces', 'complaint', 'operator')),
    detail     text,
    created_at timestamptz NOT NULL
);

-- A returned message names the confirmation it was by its Message-ID. (Digests are not indexed by
-- Message-ID: deliveries are kept free of indexes on columns a send changes, so that recording an
-- outcome stays a HOT update; see 0004.)
CREATE INDEX email_outbox_message_id ON email_outbox (message_id) WHERE message_id IS NOT NULL;
