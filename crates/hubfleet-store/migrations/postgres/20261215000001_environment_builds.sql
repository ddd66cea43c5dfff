-- Builds of local environments made from the admin panel or the API, with their logs, so that
-- the log and outcome of a build can be read after a restart and from any replica. `status` is
-- `running`, `succeeded` or `failed`; `alive` is when the building replica last said it was at
-- work (a running build whose replica stopped saying so was interrupted). `log` keeps the tail
-- of pip's output (the hub caps it; see hubfleet_store::environments::BUILD_LOG_LIMIT).
CREATE TABLE environment_builds (
    id BIGSERIAL PRIMARY KEY,
    environment TEXT NOT NULL,
    version BIGINT,
    status TEXT NOT NULL,
    started BIGINT NOT NULL,
    finished BIGINT,
    alive BIGINT NOT NULL,
    author TEXT NOT NULL,
    replica TEXT NOT NULL,
    directory TEXT NOT NULL,
    requirements TEXT NOT NULL,
    error TEXT,
    log TEXT NOT NULL DEFAULT ''
);
CREATE INDEX environment_builds_environment ON environment_builds (environment, id);
-- One build of an environment at a time, across replicas.
CREATE UNIQUE INDEX environment_builds_one_running ON environment_builds (environment)
    WHERE status = 'running';
