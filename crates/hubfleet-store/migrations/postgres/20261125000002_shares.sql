-- Sharing a server (JupyterHub 5+ `Share`, `ShareCode`). Scopes are stored as their
-- bases (JSON list, e.g. ["access:servers"]); the `!server=<owner>/<name>` filter is
-- added when read, from the current names, so renames cannot leave stale filters.

-- Access to one server granted to one user or one group (exactly one of the two).
CREATE TABLE shares (
    id BIGSERIAL PRIMARY KEY,
    owner_id BIGINT NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    server_id BIGINT NOT NULL REFERENCES servers(id) ON DELETE CASCADE,
    user_id BIGINT REFERENCES users(id) ON DELETE CASCADE,
    group_id BIGINT REFERENCES groups(id) ON DELETE CASCADE,
    scopes TEXT NOT NULL,
    created BIGINT NOT NULL,
    CHECK ((user_id IS NULL) <> (group_id IS NULL)),
    UNIQUE (server_id, user_id),
    UNIQUE (server_id, group_id)
);
CREATE INDEX shares_owner ON shares(owner_id);
CREATE INDEX shares_user ON shares(user_id);
CREATE INDEX shares_group ON shares(group_id);

-- A code that whoever holds it may exchange for a share (until it expires).
-- Only the SHA-256 of the code is kept.
CREATE TABLE share_codes (
    id BIGSERIAL PRIMARY KEY,
    owner_id BIGINT NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    server_id BIGINT NOT NULL REFERENCES servers(id) ON DELETE CASCADE,
    code_hash TEXT NOT NULL UNIQUE,
    scopes TEXT NOT NULL,
    created BIGINT NOT NULL,
    expires_at BIGINT NOT NULL,
    exchange_count BIGINT NOT NULL DEFAULT 0,
    last_exchanged_at BIGINT
);
CREATE INDEX share_codes_owner ON share_codes(owner_id);
CREATE INDEX share_codes_server ON share_codes(server_id);
