-- Leases of work that one hub replica does at a time (`leader`: the idle culler and managed
-- services), each held by one replica until a time it keeps moving forward.
CREATE TABLE hub_leases (
    name TEXT PRIMARY KEY,
    owner TEXT NOT NULL,
    until BIGINT NOT NULL
);
