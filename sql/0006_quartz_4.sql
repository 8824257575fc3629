-- Quartz.NET 4.7.3: the columns and the table that 4.x validates at start-up (its 4.0, 4.2, 4.3, 4.6 and
-- 4.7 PostgreSQL migrations), on top of 0005's 3.22 tables. All new columns are nullable: no table rewrite.
-- The history tables of 4.2-4.4 (qrtz_execution_history, ...) are only needed with UseExecutionHistory(), which we don't use.
ALTER TABLE qrtz_triggers
    ADD COLUMN retry_policy            varchar(250),
    ADD COLUMN retry_attempt           integer,
    ADD COLUMN continues_trigger_name  text,
    ADD COLUMN continues_trigger_group text,
    ADD COLUMN continuation_condition  integer,
    ADD COLUMN overlap_policy          integer,
    ADD COLUMN pause_reason            varchar(250),
    ADD COLUMN paused_by               varchar(200),
    ADD COLUMN paused_at               bigint,
    ADD COLUMN misfire_threshold       bigint,
    ADD COLUMN fixed_delay             boolean;

ALTER TABLE qrtz_paused_trigger_grps
    ADD COLUMN pause_reason varchar(250),
    ADD COLUMN paused_by    varchar(200),
    ADD COLUMN paused_at    bigint;

CREATE TABLE qrtz_paused_job_grps (
    sched_name   text NOT NULL,
    job_group    text NOT NULL,
    pause_reason varchar(250),
    paused_by    varchar(200),
    paused_at    bigint,
    PRIMARY KEY (sched_name, job_group)
);

ALTER TABLE qrtz_fired_triggers
    ADD COLUMN progress                 integer,
    ADD COLUMN progress_message         varchar(250),
    ADD COLUMN interrupt_requested_time bigint;

ALTER TABLE qrtz_scheduler_state ADD COLUMN quartz_version varchar(20);

-- The indexes of 4.7.3's create script, under 0005's names.
DROP INDEX qrtz_job_details_recovery, qrtz_triggers_next_fire, qrtz_triggers_state, qrtz_fired_triggers_recovery,
    qrtz_triggers_state_next_fire, qrtz_fired_triggers_instance, qrtz_fired_triggers_job;
CREATE INDEX qrtz_triggers_state_next_fire ON qrtz_triggers (sched_name, trigger_state, next_fire_time, priority DESC, misfire_instr);
CREATE INDEX qrtz_triggers_job ON qrtz_triggers (sched_name, job_name, job_group);
CREATE INDEX qrtz_triggers_calendar ON qrtz_triggers (sched_name, calendar_name);
CREATE INDEX qrtz_fired_triggers_instance ON qrtz_fired_triggers (sched_name, instance_name, requests_recovery);
CREATE INDEX qrtz_fired_triggers_job ON qrtz_fired_triggers (sched_name, job_name, job_group);
