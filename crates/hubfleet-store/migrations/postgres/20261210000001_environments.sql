-- Profiles (`singleuser.profileList` entries) and local environments
-- (`hubfleet.local.environments`) as versioned objects: one row per object with its current
-- state, and every version it had (who, when, what changed, why). `data` is the object's
-- values as JSON, as it would be written in the values file.
CREATE TABLE environments (
    kind TEXT NOT NULL,
    name TEXT NOT NULL,
    source TEXT NOT NULL,
    position BIGINT NOT NULL,
    hidden BIGINT NOT NULL DEFAULT 0,
    deleted BIGINT NOT NULL DEFAULT 0,
    version BIGINT NOT NULL,
    data TEXT NOT NULL,
    PRIMARY KEY (kind, name)
);
CREATE TABLE environment_versions (
    kind TEXT NOT NULL,
    name TEXT NOT NULL,
    version BIGINT NOT NULL,
    author TEXT NOT NULL,
    created BIGINT NOT NULL,
    action TEXT NOT NULL,
    comment TEXT NOT NULL,
    diff TEXT NOT NULL,
    hidden BIGINT NOT NULL DEFAULT 0,
    deleted BIGINT NOT NULL DEFAULT 0,
    data TEXT NOT NULL,
    PRIMARY KEY (kind, name, version)
);
