-- Secrets of the hub itself (e.g. the key XSRF tokens are signed with), made once and shared
-- by every replica on the same database. Values are hex.
CREATE TABLE hub_secrets (
    name TEXT PRIMARY KEY,
    value TEXT NOT NULL
);
