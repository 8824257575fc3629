-- The newest day of papers a delivery's planning matched (Digest/DeliveryPlanner.cs): the next local date's planning
-- takes the days after it, so a subscriber who moves their delivery time from before the operator's default time (when
-- the day's papers are ingested) to after it gets the day between too. Deliveries planned before have none: their
-- subscribers' next days are worked out from the schedule, as before.
ALTER TABLE delivery_papers ADD COLUMN papers_through date;
