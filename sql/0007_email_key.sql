-- Addresses are unique by their canonical form (NFC, IDNA domain, case-folded), computed by the service
-- (Subscribers/EmailAddresses.cs), whatever the database's collation: lower() under the C collation
-- folds ASCII only.
ALTER TABLE subscribers ADD COLUMN email_key text;

-- Rows written before this migration: the nearest SQL can come. Two rows the old index let through
-- but that share a key now (an address typed composed and decomposed) keep apart, marked with their id,
-- for an operator to merge.
UPDATE subscribers s
SET email_key = k.key
FROM (
    SELECT id,
           lower(normalize(email, NFC)) || CASE WHEN row_number() OVER (PARTITION BY lower(normalize(email, NFC)) ORDER BY id) = 1
                                                THEN '' ELSE ' #' || id END AS key
    FROM subscribers
) k
WHERE k.id = s.id;

ALTER TABLE subscribers ALTER COLUMN email_key SET NOT NULL;
DROP INDEX subscribers_email_key;
CREATE UNIQUE INDEX subscribers_email_key ON subscribers (email_key);

-- Rows inserted without a key (by hand, or by tools that predate it) get the same SQL approximation.
CREATE FUNCTION subscribers_default_email_key() RETURNS trigger
    LANGUAGE plpgsql AS $$
BEGIN
    NEW.email_key := coalesce(NEW.email_key, lower(normalize(NEW.email, NFC)));
    RETURN NEW;
END $$;

CREATE TRIGGER subscribers_default_email_key BEFORE INSERT ON subscribers
    FOR EACH ROW EXECUTE FUNCTION subscribers_default_email_key();
