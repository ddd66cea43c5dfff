-- NativeAuthenticator sign-ups waiting for an admin's approval. An approved sign-up becomes
-- a user (with this password hash) and leaves this table. Timestamps in microseconds.
CREATE TABLE native_signups (
    name TEXT PRIMARY KEY,
    password_hash TEXT NOT NULL,
    created INTEGER NOT NULL
);
