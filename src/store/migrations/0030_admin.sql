-- Admin UI sessions. Users are installation-wide identities (see 0001 `users`), so sessions
-- carry no organization: what a session may see is decided per request from memberships.
-- Only a SHA-256 of the session token is stored; csrf is the token the UI must echo in the
-- X-CSRF-Token header of every write (it is also in a readable cookie: double submit).
CREATE TABLE admin_sessions (
    token_hash    TEXT PRIMARY KEY,
    user_id       TEXT NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    csrf          TEXT NOT NULL,
    created_at    INTEGER NOT NULL,
    last_seen_at  INTEGER NOT NULL,
    expires_at    INTEGER NOT NULL,
    ip            TEXT,
    user_agent    TEXT
) WITHOUT ROWID;
CREATE INDEX admin_sessions_user ON admin_sessions(user_id);
CREATE INDEX admin_sessions_expiry ON admin_sessions(expires_at);
