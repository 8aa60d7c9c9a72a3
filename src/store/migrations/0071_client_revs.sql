-- A version per client (organization, bot, channel, user), bumped by every committed turn of
-- that client on a shared (PostgreSQL) store: a turn commits only if no other turn of its
-- client committed since its read, whichever node ran it, also when the client has no open
-- conversation (a one-shot turn, whose memory writes the conversation's `rev` cannot guard).
-- A SQLite store has one server, whose per-client lock already serializes turns: the table
-- stays empty there (it exists so that both schemas are one and `store copy` maps them).
CREATE TABLE client_revs (
    organization_id TEXT NOT NULL REFERENCES organizations(id) ON DELETE CASCADE,
    bot_id          TEXT NOT NULL,
    channel_id      TEXT NOT NULL,
    user_id         TEXT NOT NULL,
    rev             INTEGER NOT NULL,
    PRIMARY KEY (organization_id, bot_id, channel_id, user_id)
);
