-- Whether the hourly schedule planned a slot, or an operator did (`digest`, `digest --at`, the console's run). A catch-up
-- after an outage starts after the last slot the schedule planned: a slot planned by hand during the outage says nothing
-- of the hours before it, and taken as the mark it hid them. Slots planned before this migration count as the schedule's.
ALTER TABLE digest_slots ADD COLUMN by_schedule boolean NOT NULL DEFAULT true;
ALTER TABLE digest_slots ALTER COLUMN by_schedule SET DEFAULT false;
