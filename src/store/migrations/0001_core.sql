-- botyard core schema. Every tenant row carries organization_id; every store query filters on
-- it. Ids are TEXT (time-ordered UUIDs); times are INTEGER Unix milliseconds; flexible data is
-- JSON TEXT. Later issues ADD files (0002_..., 0003_...): never edit an applied migration.

CREATE TABLE organizations (
    id          TEXT PRIMARY KEY,
    name        TEXT NOT NULL,
    is_default  INTEGER NOT NULL DEFAULT 0,
    settings    TEXT NOT NULL DEFAULT '{}',
    created_at  INTEGER NOT NULL,
    updated_at  INTEGER NOT NULL
);
CREATE UNIQUE INDEX organizations_name ON organizations(name COLLATE NOCASE);
CREATE UNIQUE INDEX organizations_default ON organizations(is_default) WHERE is_default = 1;

-- Human admin accounts are global identities (one person, several organizations); what they
-- may see is decided by memberships, which are per organization.
CREATE TABLE users (
    id             TEXT PRIMARY KEY,
    email          TEXT NOT NULL,
    password_hash  TEXT NOT NULL,
    created_at     INTEGER NOT NULL,
    updated_at     INTEGER NOT NULL
);
CREATE UNIQUE INDEX users_email ON users(email COLLATE NOCASE);

CREATE TABLE memberships (
    organization_id  TEXT NOT NULL REFERENCES organizations(id) ON DELETE CASCADE,
    user_id          TEXT NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    role             TEXT NOT NULL CHECK (role IN ('owner', 'editor', 'viewer')),
    created_at       INTEGER NOT NULL,
    PRIMARY KEY (organization_id, user_id)
) WITHOUT ROWID;
CREATE INDEX memberships_user ON memberships(user_id);

-- settings: {"web_chat_public": bool, "ttl_days": int?, "low_data_mode": bool,
-- "step_limit": int?, ...}. rev increments on every change of the bot or its flows, so caches
-- of compiled working copies can tell they are stale. live_version_id is the build that serves
-- traffic (set by build, moved by publish/rollback); NULL = run the working flows.
CREATE TABLE bots (
    id                 TEXT PRIMARY KEY,
    organization_id    TEXT NOT NULL REFERENCES organizations(id) ON DELETE CASCADE,
    name               TEXT NOT NULL,
    description        TEXT,
    default_flow_id    TEXT,
    env                TEXT NOT NULL DEFAULT '{}',
    settings           TEXT NOT NULL DEFAULT '{}',
    custom_components  TEXT NOT NULL DEFAULT '{}',
    live_version_id    TEXT,
    rev                INTEGER NOT NULL DEFAULT 0,
    created_at         INTEGER NOT NULL,
    updated_at         INTEGER NOT NULL
);
CREATE UNIQUE INDEX bots_org_name ON bots(organization_id, name COLLATE NOCASE);

-- The working copy of a bot's flows.
CREATE TABLE flows (
    id               TEXT PRIMARY KEY,
    organization_id  TEXT NOT NULL REFERENCES organizations(id) ON DELETE CASCADE,
    bot_id           TEXT NOT NULL REFERENCES bots(id) ON DELETE CASCADE,
    name             TEXT NOT NULL,
    description      TEXT,
    content          TEXT NOT NULL,
    commands         TEXT NOT NULL DEFAULT '[]',
    position         INTEGER NOT NULL,
    created_at       INTEGER NOT NULL,
    updated_at       INTEGER NOT NULL
);
CREATE UNIQUE INDEX flows_bot_name ON flows(bot_id, name COLLATE NOCASE);
CREATE INDEX flows_org_bot ON flows(organization_id, bot_id, position);

-- Immutable builds. snapshot = {"name","default_flow","flows":[{id,name,commands,content}],
-- "custom_components"}. seq orders builds of one bot (latest = highest).
CREATE TABLE bot_versions (
    id               TEXT PRIMARY KEY,
    organization_id  TEXT NOT NULL REFERENCES organizations(id) ON DELETE CASCADE,
    bot_id           TEXT NOT NULL REFERENCES bots(id) ON DELETE CASCADE,
    seq              INTEGER NOT NULL,
    snapshot         TEXT NOT NULL,
    engine_version   TEXT NOT NULL,
    created_at       INTEGER NOT NULL
);
CREATE UNIQUE INDEX bot_versions_seq ON bot_versions(bot_id, seq);
CREATE INDEX bot_versions_org ON bot_versions(organization_id, bot_id);

-- kind: 'api' (Studio API channel); connector kinds ('telegram', ...) come with plugins.
-- Every channel owns a Studio key pair (spec §1.1): api_key is public, the secret is stored
-- encrypted (nonce || ciphertext, AAD = channel id). token: public token of connector webhooks
-- (/hooks/{token}). config: connector settings (JSON).
CREATE TABLE channels (
    id               TEXT PRIMARY KEY,
    organization_id  TEXT NOT NULL REFERENCES organizations(id) ON DELETE CASCADE,
    bot_id           TEXT NOT NULL REFERENCES bots(id) ON DELETE CASCADE,
    kind             TEXT NOT NULL,
    name             TEXT NOT NULL,
    api_key          TEXT NOT NULL,
    secret_enc       BLOB NOT NULL,
    webhook_url      TEXT,
    token            TEXT,
    plugin_id        TEXT,
    config           TEXT NOT NULL DEFAULT '{}',
    status           TEXT NOT NULL DEFAULT 'active',
    created_at       INTEGER NOT NULL,
    updated_at       INTEGER NOT NULL
);
CREATE UNIQUE INDEX channels_api_key ON channels(api_key);
CREATE UNIQUE INDEX channels_token ON channels(token) WHERE token IS NOT NULL;
CREATE INDEX channels_org_bot ON channels(organization_id, bot_id);

-- Open Chat Studio API keys: only a SHA-256 of the key is kept; prefix is shown in lists.
CREATE TABLE api_keys (
    id               TEXT PRIMARY KEY,
    organization_id  TEXT NOT NULL REFERENCES organizations(id) ON DELETE CASCADE,
    name             TEXT NOT NULL,
    prefix           TEXT NOT NULL,
    key_hash         TEXT NOT NULL,
    read_only        INTEGER NOT NULL DEFAULT 0,
    revoked_at       INTEGER,
    last_used_at     INTEGER,
    created_at       INTEGER NOT NULL
);
CREATE UNIQUE INDEX api_keys_hash ON api_keys(key_hash);
CREATE INDEX api_keys_org ON api_keys(organization_id);

-- End users, per organization (OCS participants). platform = the channel kind they talk on.
CREATE TABLE participants (
    id               TEXT PRIMARY KEY,
    organization_id  TEXT NOT NULL REFERENCES organizations(id) ON DELETE CASCADE,
    platform         TEXT NOT NULL,
    identifier       TEXT NOT NULL,
    name             TEXT,
    data             TEXT NOT NULL DEFAULT '{}',
    created_at       INTEGER NOT NULL,
    updated_at       INTEGER NOT NULL
);
CREATE UNIQUE INDEX participants_identity ON participants(organization_id, platform, identifier);

-- Participant data per chatbot (OCS "data per experiment").
CREATE TABLE participant_data (
    organization_id  TEXT NOT NULL REFERENCES organizations(id) ON DELETE CASCADE,
    participant_id   TEXT NOT NULL REFERENCES participants(id) ON DELETE CASCADE,
    bot_id           TEXT NOT NULL REFERENCES bots(id) ON DELETE CASCADE,
    data             TEXT NOT NULL DEFAULT '{}',
    updated_at       INTEGER NOT NULL,
    PRIMARY KEY (participant_id, bot_id)
) WITHOUT ROWID;

-- Conversations (= OCS sessions) of one client (bot, channel, user_id). At most one open per
-- client (partial unique index). hold/previous: the interpreter's saved hold and previous
-- position (JSON). metadata: of the request that created it. version_id: the build it started
-- on. tags/state: OCS session tags and state. expires_at: data TTL; an expired open
-- conversation counts as closed.
CREATE TABLE conversations (
    id                   TEXT PRIMARY KEY,
    organization_id      TEXT NOT NULL REFERENCES organizations(id) ON DELETE CASCADE,
    bot_id               TEXT NOT NULL REFERENCES bots(id) ON DELETE CASCADE,
    channel_id           TEXT NOT NULL REFERENCES channels(id) ON DELETE CASCADE,
    user_id              TEXT NOT NULL,
    participant_id       TEXT REFERENCES participants(id) ON DELETE SET NULL,
    flow                 TEXT NOT NULL,
    step                 TEXT NOT NULL,
    status               TEXT NOT NULL CHECK (status IN ('open', 'closed')),
    hold                 TEXT,
    previous             TEXT,
    metadata             TEXT NOT NULL DEFAULT '{}',
    version_id           TEXT,
    tags                 TEXT NOT NULL DEFAULT '[]',
    state                TEXT NOT NULL DEFAULT '{}',
    last_interaction_at  INTEGER NOT NULL,
    created_at           INTEGER NOT NULL,
    updated_at           INTEGER NOT NULL,
    ended_at             INTEGER,
    expires_at           INTEGER
);
CREATE UNIQUE INDEX conversations_open_client
    ON conversations(bot_id, channel_id, user_id) WHERE status = 'open';
CREATE INDEX conversations_client ON conversations(bot_id, channel_id, user_id, created_at);
CREATE INDEX conversations_org ON conversations(organization_id, bot_id, updated_at);
CREATE INDEX conversations_expiry ON conversations(expires_at) WHERE expires_at IS NOT NULL;

-- The transcript. direction SEND (bot → user) or RECEIVE. message_order: position within its
-- turn; interaction_order: gotos made in the turn. turn_id groups the rows of one turn.
CREATE TABLE messages (
    id                 INTEGER PRIMARY KEY,
    organization_id    TEXT NOT NULL,
    conversation_id    TEXT NOT NULL REFERENCES conversations(id) ON DELETE CASCADE,
    bot_id             TEXT NOT NULL,
    turn_id            TEXT NOT NULL,
    direction          TEXT NOT NULL CHECK (direction IN ('SEND', 'RECEIVE')),
    flow               TEXT NOT NULL,
    step               TEXT NOT NULL,
    content_type       TEXT NOT NULL,
    payload            TEXT NOT NULL,
    message_order      INTEGER NOT NULL,
    interaction_order  INTEGER NOT NULL,
    created_at         INTEGER NOT NULL,
    expires_at         INTEGER
);
CREATE INDEX messages_conversation ON messages(conversation_id, id);
CREATE INDEX messages_org_bot ON messages(organization_id, bot_id, created_at);
CREATE INDEX messages_expiry ON messages(expires_at) WHERE expires_at IS NOT NULL;

-- Long-term memories of one client, unique per key. value: the interpreter's memory format.
CREATE TABLE memories (
    organization_id  TEXT NOT NULL,
    bot_id           TEXT NOT NULL,
    channel_id       TEXT NOT NULL,
    user_id          TEXT NOT NULL,
    key              TEXT NOT NULL,
    value            TEXT NOT NULL,
    created_at       INTEGER NOT NULL,
    updated_at       INTEGER NOT NULL,
    expires_at       INTEGER,
    PRIMARY KEY (bot_id, channel_id, user_id, key)
) WITHOUT ROWID;
CREATE INDEX memories_org ON memories(organization_id, bot_id);

-- Usage: one row per (bot, UTC day, client) with the number of messages of both directions.
-- Kept even in low-data mode; gives message counts and distinct clients per window.
CREATE TABLE usage_daily (
    organization_id  TEXT NOT NULL,
    bot_id           TEXT NOT NULL,
    day              INTEGER NOT NULL,
    channel_id       TEXT NOT NULL,
    user_id          TEXT NOT NULL,
    messages         INTEGER NOT NULL,
    PRIMARY KEY (bot_id, day, channel_id, user_id)
) WITHOUT ROWID;

-- Durable queue of broadcasts (spec §2.2): status pending → done | failed. The turn that runs
-- a broadcast marks it done in the same transaction, so it runs once.
CREATE TABLE broadcasts (
    id               TEXT PRIMARY KEY,
    organization_id  TEXT NOT NULL REFERENCES organizations(id) ON DELETE CASCADE,
    bot_id           TEXT NOT NULL REFERENCES bots(id) ON DELETE CASCADE,
    channel_id       TEXT NOT NULL REFERENCES channels(id) ON DELETE CASCADE,
    request          TEXT NOT NULL,
    status           TEXT NOT NULL CHECK (status IN ('pending', 'done', 'failed')),
    attempts         INTEGER NOT NULL DEFAULT 0,
    last_error       TEXT,
    created_at       INTEGER NOT NULL,
    updated_at       INTEGER NOT NULL
);
CREATE INDEX broadcasts_pending ON broadcasts(created_at) WHERE status = 'pending';

-- Small installation-wide values (e.g. auth_epoch, bumped whenever a credential changes so a
-- running server drops its auth cache).
CREATE TABLE meta (
    key    TEXT PRIMARY KEY,
    value  TEXT NOT NULL
) WITHOUT ROWID;
INSERT INTO meta(key, value) VALUES ('auth_epoch', '0');
