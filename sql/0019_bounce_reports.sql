-- The reports read from the bounce mailbox whose events are recorded, by where they are: the message with this UID
-- in this folder while the folder had this UIDVALIDITY (RFC 9051: together they name one message for good). A
-- report is recorded, then moved out of the folder; when the move fails or the process stops in between, the next
-- round reads it again, and finding it here records nothing twice (a soft bounce counted twice brought an address
-- nearer suppression). Not keyed by the report's Message-ID: some reports have none, and two reports that happen to
-- share one (the same DSN delivered twice) are two bounces. Once a report has left the folder its row is deleted,
-- so the table holds about what the folder holds.
CREATE TABLE bounce_reports (
    mailbox      text        NOT NULL, -- Bounces:Imap:Username@Host/Folder
    uid_validity bigint      NOT NULL,
    uid          bigint      NOT NULL,
    recorded_at  timestamptz NOT NULL,
    PRIMARY KEY (mailbox, uid_validity, uid)
);
