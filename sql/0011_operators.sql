-- Issue 14: the operator console's accounts, and the switch that pauses sending on every instance.

CREATE TABLE operators (
    id              bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    -- Trimmed and lower-cased; sign-in compares it the same way.
    email           text        NOT NULL UNIQUE CHECK (length(email) BETWEEN 3 AND 254),
    -- ASP.NET Core Identity's PasswordHasher format (PBKDF2, salted, versioned).
    password_hash   text        NOT NULL,
    -- New at every `admin add`: a session carries the stamp it signed in with, so a reset ends older sessions.
    password_stamp  uuid        NOT NULL,
    created_at      timestamptz NOT NULL,
    password_set_at timestamptz NOT NULL,
    -- A password `admin add` generated and printed is for one sign-in: the operator must choose their own.
    must_change_password boolean NOT NULL DEFAULT false
);

-- One row. Senders claim nothing while `paused` is true; they read it at every claim, so every instance
-- stops taking new deliveries within its poll interval.
CREATE TABLE sending_control (
    singleton  boolean     PRIMARY KEY DEFAULT true CHECK (singleton),
    paused     boolean     NOT NULL DEFAULT false,
    changed_by text,
    changed_at timestamptz
);

INSERT INTO sending_control (singleton, paused) VALUES (true, false);
