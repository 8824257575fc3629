-- A delivery's queue row and its delivery_papers row are written only by the statement that inserts the delivery
-- (DeliveryPlanner), from the rows that insert returns, so their foreign keys to deliveries could never fail; yet each
-- was checked row by row, a lookup and a row lock per key, twice for every delivery planned (~36,000 a slot at a
-- million subscribers). What the keys still did is remove both rows with their delivery (erasure cascades from
-- subscribers to deliveries), and that is what this trigger does instead.
ALTER TABLE delivery_queue DROP CONSTRAINT delivery_queue_delivery_id_fkey;
ALTER TABLE delivery_papers DROP CONSTRAINT delivery_papers_subscriber_id_day_fkey;

CREATE FUNCTION delete_delivery_rows() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    DELETE FROM delivery_queue WHERE delivery_id = OLD.id;
    DELETE FROM delivery_papers WHERE subscriber_id = OLD.subscriber_id AND day = OLD.day;
    RETURN NULL;
END
$$;

CREATE TRIGGER deliveries_delete_rows AFTER DELETE ON deliveries FOR EACH ROW EXECUTE FUNCTION delete_delivery_rows();
