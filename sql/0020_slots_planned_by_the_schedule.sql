-- Whether the hourly schedule planned a slot, or an operator did (`digest`, `digest --at`, the console's run). A catch-up
-- after an outage starts after the last slot the schedule planned: a slot planned by hand during the outage says nothing
-- of the hours before it, and taken as the mark it hid them. The service names it on every slot it records; the default
-- is for the slots planned before this migration and for an instance of the version before while both run (the
-- schedule's slots, mostly).
ALTER TABLE digest_slots ADD COLUMN by_schedule boolean NOT NULL DEFAULT true;
