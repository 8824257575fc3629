-- A signup of an address that had unsubscribed (or bounced) begins a new subscription with a new key, so that the old
-- subscription's links stop working. Anyone can type anyone's address: the new key waits here until the confirmation
-- link is followed, and until then the owner's own links (download my data, delete everything) keep working.
ALTER TABLE subscribers ADD COLUMN renewed_subscription_key bytea;
