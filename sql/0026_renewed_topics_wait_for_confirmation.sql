-- A signup of a former subscriber's address (sql/0021) asks for topics and a delivery time of its own. Anyone can type
-- anyone's address: what it asked for waits here until the confirmation link is followed, and until then the former
-- subscription's topics and delivery time stay as their owner left them (and as their data export shows them).
ALTER TABLE subscribers
    ADD COLUMN renewed_topics        text[],
    ADD COLUMN renewed_time_zone     text,
    ADD COLUMN renewed_delivery_hour smallint,
    ADD COLUMN renewed_frequency     text,
    ADD COLUMN renewed_weekday       smallint;
