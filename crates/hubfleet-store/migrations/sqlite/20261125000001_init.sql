-- Timestamps are microseconds since the Unix epoch, UTC. Flags are 0/1 integers
-- so that the same queries work on SQLite and PostgreSQL through sqlx::Any.
CREATE TABLE users (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    name TEXT NOT NULL UNIQUE,
    admin INTEGER NOT NULL DEFAULT 0,
    created INTEGER NOT NULL,
    last_activity INTEGER,
    password_hash TEXT,
    -- Authenticator state (JSON), encrypted by the hub when a key is configured.
    auth_state TEXT
);

CREATE TABLE groups (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    name TEXT NOT NULL UNIQUE,
    properties TEXT NOT NULL DEFAULT '{}'
);

CREATE TABLE user_groups (
    user_id INTEGER NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    group_id INTEGER NOT NULL REFERENCES groups(id) ON DELETE CASCADE,
    PRIMARY KEY (user_id, group_id)
);
CREATE INDEX user_groups_group ON user_groups(group_id);

CREATE TABLE services (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    name TEXT NOT NULL UNIQUE,
    admin INTEGER NOT NULL DEFAULT 0,
    url TEXT NOT NULL DEFAULT '',
    display INTEGER NOT NULL DEFAULT 1,
    info TEXT NOT NULL DEFAULT '{}',
    oauth_client_id TEXT,
    -- 1 when defined in the config file (and so not deletable through the API).
    from_config INTEGER NOT NULL DEFAULT 0
);

CREATE TABLE roles (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    name TEXT NOT NULL UNIQUE,
    description TEXT NOT NULL DEFAULT '',
    scopes TEXT NOT NULL DEFAULT '[]'
);

-- Who holds a role: a user, a group or a service (exactly one per row).
CREATE TABLE role_members (
    role_id INTEGER NOT NULL REFERENCES roles(id) ON DELETE CASCADE,
    user_id INTEGER REFERENCES users(id) ON DELETE CASCADE,
    group_id INTEGER REFERENCES groups(id) ON DELETE CASCADE,
    service_id INTEGER REFERENCES services(id) ON DELETE CASCADE
);
CREATE INDEX role_members_role ON role_members(role_id);

CREATE TABLE sessions (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    user_id INTEGER NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    session_id TEXT NOT NULL,
    token_hash TEXT NOT NULL UNIQUE,
    created INTEGER NOT NULL,
    expires_at INTEGER NOT NULL
);
CREATE INDEX sessions_session_id ON sessions(session_id);

CREATE TABLE servers (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    user_id INTEGER NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    name TEXT NOT NULL,
    display_name TEXT NOT NULL DEFAULT '',
    phase TEXT NOT NULL,
    phase_detail TEXT,
    target TEXT,
    spawn_state TEXT,
    user_options TEXT NOT NULL DEFAULT '{}',
    started INTEGER,
    last_activity INTEGER,
    failed_reason TEXT,
    lease_owner TEXT,
    lease_until INTEGER,
    UNIQUE (user_id, name)
);

CREATE TABLE api_tokens (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    -- Exactly one owner: a user or a service.
    user_id INTEGER REFERENCES users(id) ON DELETE CASCADE,
    service_id INTEGER REFERENCES services(id) ON DELETE CASCADE,
    server_id INTEGER REFERENCES servers(id) ON DELETE CASCADE,
    client_id TEXT NOT NULL,
    session_id TEXT,
    prefix TEXT NOT NULL,
    hashed TEXT NOT NULL,
    scopes TEXT NOT NULL,
    note TEXT NOT NULL DEFAULT '',
    created INTEGER NOT NULL,
    expires_at INTEGER,
    last_activity INTEGER
);
CREATE INDEX api_tokens_prefix ON api_tokens(prefix);

CREATE TABLE oauth_clients (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    identifier TEXT NOT NULL UNIQUE,
    secret_hash TEXT NOT NULL,
    redirect_uri TEXT NOT NULL,
    description TEXT NOT NULL,
    allowed_scopes TEXT NOT NULL,
    server_id INTEGER REFERENCES servers(id) ON DELETE CASCADE
);

CREATE TABLE oauth_codes (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    code_hash TEXT NOT NULL UNIQUE,
    client_id TEXT NOT NULL REFERENCES oauth_clients(identifier) ON DELETE CASCADE,
    user_id INTEGER NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    session_id TEXT,
    scopes TEXT NOT NULL,
    redirect_uri TEXT NOT NULL,
    code_challenge TEXT,
    code_challenge_method TEXT,
    expires_at INTEGER NOT NULL
);

-- Append-only usage ledger: never updated, never deleted by the hub.
CREATE TABLE server_events (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    at INTEGER NOT NULL,
    user_name TEXT NOT NULL,
    server_name TEXT NOT NULL,
    event TEXT NOT NULL,
    detail TEXT NOT NULL DEFAULT '{}'
);
