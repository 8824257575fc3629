-- An address's bounce records, whatever their kind: an erasure deletes them, the data export lists them, and a bounce's
-- verdict counts them. The soft bounces' index (sql/0009) served none of these, so each read the whole table, and
-- Retention erases signups never confirmed by the thousand. This one also serves the soft bounces' count.
CREATE INDEX bounce_events_email ON bounce_events (email, received_at);
DROP INDEX bounce_events_soft;

-- Retention looks for signups never confirmed every hour (Subscribers/SubscriberData.cs, NeverConfirmedSince): without an
-- index each look read every subscriber. Few rows are in this one: a signup leaves it when it is confirmed.
CREATE INDEX subscribers_never_confirmed ON subscribers (id)
    WHERE status <> 'active' AND renewed_subscription_key IS NULL AND confirmed_at IS NULL;

-- The console's runs, failures and papers of the last days (Operators/Dashboard.cs) read deliveries by day: without an
-- index each page read every delivery kept, a year of them by default. A send changes no delivery's day, so recording an
-- outcome stays a HOT update (sql/0004).
CREATE INDEX deliveries_day ON deliveries (day);
