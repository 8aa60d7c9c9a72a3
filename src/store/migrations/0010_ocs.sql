-- Open Chat Studio API (issue 4). Reuses the core tables: an OCS experiment is a bot, an OCS
-- participant is a `participants` row, participant data per chatbot is `participant_data`.
-- Adds what OCS needs on top. Times are Unix milliseconds except ocs_messages.created_at,
-- which is microseconds (OCS timestamps carry them, and a session's messages need strictly
-- increasing times).

ALTER TABLE participants ADD COLUMN remote_id TEXT NOT NULL DEFAULT '';
ALTER TABLE participant_data ADD COLUMN system_metadata TEXT NOT NULL DEFAULT '{}';
-- role: admin | chatbot_admin | chat_viewer | event_admin | team_admin | annotation_reviewer
ALTER TABLE api_keys ADD COLUMN ocs_role TEXT NOT NULL DEFAULT 'admin';
ALTER TABLE api_keys ADD COLUMN owner_email TEXT;

-- Embedded-widget channels (embed keys). auth_level: 0 none, 1 embed key, 2 session token.
CREATE TABLE ocs_widget_channels (
    id                      TEXT PRIMARY KEY,
    organization_id         TEXT NOT NULL REFERENCES organizations(id) ON DELETE CASCADE,
    bot_id                  TEXT NOT NULL REFERENCES bots(id) ON DELETE CASCADE,
    name                    TEXT NOT NULL,
    embed_key               TEXT NOT NULL,
    allowed_domains         TEXT NOT NULL DEFAULT '[]',
    auth_level              INTEGER NOT NULL DEFAULT 2,
    enabled                 INTEGER NOT NULL DEFAULT 1,
    disabled_message        TEXT,
    deleted                 INTEGER NOT NULL DEFAULT 0,
    session_token_lifetime  INTEGER,
    widget_version          TEXT,
    widget_version_at       INTEGER,
    created_at              INTEGER NOT NULL
);
CREATE UNIQUE INDEX ocs_widget_channels_key ON ocs_widget_channels(embed_key);
CREATE INDEX ocs_widget_channels_bot ON ocs_widget_channels(organization_id, bot_id);

-- OCS sessions. id is the external id and also the user_id of the session's engine client
-- (bot, the bot's `ocs` channel, id): every conversation the engine opens for that client
-- belongs to this session. channel_kind: api | widget | platform.
CREATE TABLE ocs_sessions (
    id                      TEXT PRIMARY KEY,
    organization_id         TEXT NOT NULL REFERENCES organizations(id) ON DELETE CASCADE,
    bot_id                  TEXT NOT NULL REFERENCES bots(id) ON DELETE CASCADE,
    participant_id          TEXT NOT NULL REFERENCES participants(id) ON DELETE CASCADE,
    platform                TEXT NOT NULL,
    channel_kind            TEXT NOT NULL,
    widget_channel_id       TEXT,
    owner_key_id            TEXT,
    status                  TEXT NOT NULL,
    state                   TEXT NOT NULL DEFAULT '{}',
    version_number          INTEGER,
    session_token_required  INTEGER NOT NULL DEFAULT 1,
    embed_source            TEXT,
    created_at              INTEGER NOT NULL,
    updated_at              INTEGER NOT NULL,
    ended_at                INTEGER
);
CREATE INDEX ocs_sessions_org ON ocs_sessions(organization_id, created_at, id);
CREATE INDEX ocs_sessions_participant ON ocs_sessions(participant_id, bot_id, created_at);

-- The OCS view of a session's messages. tags: [{"name","category"}]; file_ids: [int].
CREATE TABLE ocs_messages (
    id               INTEGER PRIMARY KEY,
    organization_id  TEXT NOT NULL,
    session_id       TEXT NOT NULL REFERENCES ocs_sessions(id) ON DELETE CASCADE,
    role             TEXT NOT NULL CHECK (role IN ('user', 'assistant', 'system')),
    content          TEXT NOT NULL,
    metadata         TEXT NOT NULL DEFAULT '{}',
    tags             TEXT NOT NULL DEFAULT '[]',
    file_ids         TEXT NOT NULL DEFAULT '[]',
    created_at       INTEGER NOT NULL
);
CREATE INDEX ocs_messages_session ON ocs_messages(session_id, created_at, id);

-- Session (chat) tags. category '' = user tag; anything else is a system tag.
CREATE TABLE ocs_session_tags (
    session_id   TEXT NOT NULL REFERENCES ocs_sessions(id) ON DELETE CASCADE,
    name         TEXT NOT NULL,
    category     TEXT NOT NULL DEFAULT '',
    created_by   TEXT,
    created_at   INTEGER NOT NULL,
    PRIMARY KEY (session_id, name, category)
) WITHOUT ROWID;
CREATE INDEX ocs_session_tags_name ON ocs_session_tags(name);

-- Async chat tasks: queued → running → complete | error. message_id: the first assistant
-- message of the turn. error_status: 400 (user-facing) or 500.
CREATE TABLE ocs_tasks (
    id               TEXT PRIMARY KEY,
    organization_id  TEXT NOT NULL,
    session_id       TEXT NOT NULL REFERENCES ocs_sessions(id) ON DELETE CASCADE,
    status           TEXT NOT NULL CHECK (status IN ('queued', 'running', 'complete', 'error')),
    request          TEXT NOT NULL,
    message_id       INTEGER,
    error            TEXT,
    error_status     INTEGER,
    created_at       INTEGER NOT NULL,
    updated_at       INTEGER NOT NULL
);
CREATE INDEX ocs_tasks_pending ON ocs_tasks(created_at) WHERE status IN ('queued', 'running');

-- Uploaded files; the bytes live in DATA/ocs-files/<id>. expires_at is cleared on attach.
CREATE TABLE ocs_files (
    id               INTEGER PRIMARY KEY AUTOINCREMENT,
    organization_id  TEXT NOT NULL REFERENCES organizations(id) ON DELETE CASCADE,
    name             TEXT NOT NULL,
    content_type     TEXT NOT NULL,
    size             INTEGER NOT NULL,
    purpose          TEXT NOT NULL,
    metadata         TEXT NOT NULL DEFAULT '{}',
    session_id       TEXT,
    expires_at       INTEGER,
    created_at       INTEGER NOT NULL
);
CREATE INDEX ocs_files_expiry ON ocs_files(expires_at) WHERE expires_at IS NOT NULL;

-- One-off scheduled prompts per (participant, chatbot).
CREATE TABLE ocs_schedules (
    id                 INTEGER PRIMARY KEY,
    organization_id    TEXT NOT NULL REFERENCES organizations(id) ON DELETE CASCADE,
    participant_id     TEXT NOT NULL REFERENCES participants(id) ON DELETE CASCADE,
    bot_id             TEXT NOT NULL REFERENCES bots(id) ON DELETE CASCADE,
    external_id        TEXT NOT NULL,
    name               TEXT NOT NULL,
    prompt_text        TEXT NOT NULL,
    next_trigger_date  INTEGER NOT NULL,
    cancelled_at       INTEGER,
    triggered_at       INTEGER,
    created_at         INTEGER NOT NULL,
    updated_at         INTEGER NOT NULL
);
CREATE UNIQUE INDEX ocs_schedules_ext ON ocs_schedules(participant_id, bot_id, external_id);
CREATE INDEX ocs_schedules_due ON ocs_schedules(next_trigger_date)
    WHERE cancelled_at IS NULL AND triggered_at IS NULL;
