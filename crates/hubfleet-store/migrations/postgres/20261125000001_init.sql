-- Timestamps are microseconds since the Unix epoch, UTC. Flags are 0/1 integers
-- so that the same queries work on SQLite and PostgreSQL through sqlx::Any.
CREATE TABLE users (
    id BIGSERIAL PRIMARY KEY,
    name TEXT NOT NULL UNIQUE,
    admin BIGINT NOT NULL DEFAULT 0,
    created BIGINT NOT NULL,
    last_activity BIGINT,
    password_hash TEXT,
    -- Authenticator state (JSON), encrypted by the hub when a key is configured.
    auth_state TEXT
);

CREATE TABLE groups (
    id BIGSERIAL PRIMARY KEY,
    name TEXT NOT NULL UNIQUE,
    properties TEXT NOT NULL DEFAULT '{}'
);

CREATE TABLE user_groups (
    user_id BIGINT NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    group_id BIGINT NOT NULL REFERENCES groups(id) ON DELETE CASCADE,
    PRIMARY KEY (user_id, group_id)
);
CREATE INDEX user_groups_group ON user_groups(group_id);

CREATE TABLE services (
    id BIGSERIAL PRIMARY KEY,
    name TEXT NOT NULL UNIQUE,
    admin BIGINT NOT NULL DEFAULT 0,
    url TEXT NOT NULL DEFAULT '',
    display BIGINT NOT NULL DEFAULT 1,
    info TEXT NOT NULL DEFAULT '{}',
    oauth_client_id TEXT,
    -- 1 when defined in the config file (and so not deletable through the API).
    from_config BIGINT NOT NULL DEFAULT 0
);

CREATE TABLE roles (
    id BIGSERIAL PRIMARY KEY,
    name TEXT NOT NULL UNIQUE,
    description TEXT NOT NULL DEFAULT '',
    scopes TEXT NOT NULL DEFAULT '[]'
);

-- Who holds a role: a user, a group or a service (exactly one per row).
CREATE TABLE role_members (
    role_id BIGINT NOT NULL REFERENCES roles(id) ON DELETE CASCADE,
    user_id BIGINT REFERENCES users(id) ON DELETE CASCADE,
    group_id BIGINT REFERENCES groups(id) ON DELETE CASCADE,
    service_id BIGINT REFERENCES services(id) ON DELETE CASCADE
);
CREATE INDEX role_members_role ON role_members(role_id);

CREATE TABLE sessions (
    id BIGSERIAL PRIMARY KEY,
    user_id BIGINT NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    session_id TEXT NOT NULL,
    token_hash TEXT NOT NULL UNIQUE,
    created BIGINT NOT NULL,
    expires_at BIGINT NOT NULL
);
CREATE INDEX sessions_session_id ON sessions(session_id);

CREATE TABLE servers (
    id BIGSERIAL PRIMARY KEY,
    user_id BIGINT NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    name TEXT NOT NULL,
    display_name TEXT NOT NULL DEFAULT '',
    phase TEXT NOT NULL,
    phase_detail TEXT,
    target TEXT,
    spawn_state TEXT,
    user_options TEXT NOT NULL DEFAULT '{}',
    started BIGINT,
    last_activity BIGINT,
    failed_reason TEXT,
    lease_owner TEXT,
    lease_until BIGINT,
    UNIQUE (user_id, name)
);

CREATE TABLE api_tokens (
    id BIGSERIAL PRIMARY KEY,
    -- Exactly one owner: a user or a service.
    user_id BIGINT REFERENCES users(id) ON DELETE CASCADE,
    service_id BIGINT REFERENCES services(id) ON DELETE CASCADE,
    server_id BIGINT REFERENCES servers(id) ON DELETE CASCADE,
    client_id TEXT NOT NULL,
    session_id TEXT,
    prefix TEXT NOT NULL,
    hashed TEXT NOT NULL,
    scopes TEXT NOT NULL,
    note TEXT NOT NULL DEFAULT '',
    created BIGINT NOT NULL,
    expires_at BIGINT,
    last_activity BIGINT
);
CREATE INDEX api_tokens_prefix ON api_tokens(prefix);

CREATE TABLE oauth_clients (
    id BIGSERIAL PRIMARY KEY,
    identifier TEXT NOT NULL UNIQUE,
    secret_hash TEXT NOT NULL,
    redirect_uri TEXT NOT NULL,
    description TEXT NOT NULL,
    allowed_scopes TEXT NOT NULL,
    server_id BIGINT REFERENCES servers(id) ON DELETE CASCADE
);

CREATE TABLE oauth_codes (
    id BIGSERIAL PRIMARY KEY,
    code_hash TEXT NOT NULL UNIQUE,
    client_id TEXT NOT NULL REFERENCES oauth_clients(identifier) ON DELETE CASCADE,
    user_id BIGINT NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    session_id TEXT,
    scopes TEXT NOT NULL,
    redirect_uri TEXT NOT NULL,
    code_challenge TEXT,
    code_challenge_method TEXT,
    expires_at BIGINT NOT NULL
);

-- Append-only usage ledger: never updated, never deleted by the hub.
CREATE TABLE server_events (
    id BIGSERIAL PRIMARY KEY,
    at BIGINT NOT NULL,
    user_name TEXT NOT NULL,
    server_name TEXT NOT NULL,
    event TEXT NOT NULL,
    detail TEXT NOT NULL DEFAULT '{}'
);
