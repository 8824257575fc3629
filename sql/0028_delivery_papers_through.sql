-- The newest day of papers a delivery's planning matched (Digest/DeliveryPlanner.cs): later planning reads the subscriber's
-- last of the week, so one who moves their delivery time from before the operator's default time (when the day's papers
-- are ingested) to after it, or whose slot came before a late fetch, gets the day between too. Deliveries planned before
-- have none: their subscribers' next days are worked out from the schedule alone, as before.
ALTER TABLE delivery_papers ADD COLUMN papers_through date;
