-- Erasing a subscriber deletes the stored meaning of each topic text no other subscriber follows: an index to find
-- the others by text. Without it every erasure read the whole topics table, and Retention erases signups never
-- confirmed by the thousand.
CREATE INDEX topics_text ON topics (text);
