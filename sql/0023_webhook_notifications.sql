-- The providers' notifications the bounce webhook has recorded, by the provider's own id (Amazon SNS's MessageId, SES's
-- feedbackId, Postmark's ID, the generic form's "id"): a provider that delivers one again (SNS delivers at least once,
-- Postmark retries a call whose answer it did not get) is not counted twice. Kept 30 days.
CREATE TABLE webhook_notifications (
    id text PRIMARY KEY,
    received_at timestamptz NOT NULL
);
CREATE INDEX webhook_notifications_received_at ON webhook_notifications (received_at);
