-- Spawn limits count starting and active servers on every start, and the hub's periodic work
-- reads the servers that are not stopped: both by phase, without reading every user's row.
CREATE INDEX servers_phase ON servers(phase);
