-- WASM plugins (issue 5). First-party plugins ship inside the binary and need no row here;
-- `plugins` holds what organizations install themselves (the .wasm is kept in the row).
CREATE TABLE plugins (
    id               TEXT PRIMARY KEY,
    organization_id  TEXT NOT NULL REFERENCES organizations(id) ON DELETE CASCADE,
    name             TEXT NOT NULL,
    version          TEXT NOT NULL,
    kind             TEXT NOT NULL,          -- 'app' | 'channel'
    api              TEXT NOT NULL,          -- 'botyard-plugin@0.1.0'
    sha256           TEXT NOT NULL,
    manifest         TEXT NOT NULL,          -- the manifest JSON
    wasm             BLOB NOT NULL,
    allowed_hosts    TEXT NOT NULL DEFAULT '[]',  -- hosts added by the installation (JSON array)
    config           TEXT NOT NULL DEFAULT '{}',  -- installation config and secrets of apps (JSON)
    created_at       INTEGER NOT NULL,
    updated_at       INTEGER NOT NULL
);
CREATE UNIQUE INDEX plugins_org_name ON plugins(organization_id, name);

-- The key-value store of the `botyard:plugin/kv` interface, one key space per
-- (organization, plugin name).
CREATE TABLE plugin_kv (
    organization_id  TEXT NOT NULL,
    plugin           TEXT NOT NULL,
    key              TEXT NOT NULL,
    value            BLOB NOT NULL,
    PRIMARY KEY (organization_id, plugin, key)
) WITHOUT ROWID;

-- Connector webhooks: each normalized event is stored (deduplicated by the platform's event
-- id) before the webhook is acknowledged; a worker runs the turns from here.
-- status: 'pending' | 'done' | 'failed'.
CREATE TABLE inbound_events (
    id               TEXT PRIMARY KEY,
    organization_id  TEXT NOT NULL,
    channel_id       TEXT NOT NULL REFERENCES channels(id) ON DELETE CASCADE,
    external_id      TEXT NOT NULL,
    event            TEXT NOT NULL,
    status           TEXT NOT NULL DEFAULT 'pending',
    attempts         INTEGER NOT NULL DEFAULT 0,
    last_error       TEXT,
    created_at       INTEGER NOT NULL,
    processed_at     INTEGER
);
CREATE UNIQUE INDEX inbound_events_dedup ON inbound_events(channel_id, external_id);
CREATE INDEX inbound_events_pending ON inbound_events(status, created_at);

-- Bot replies to connector channels, one row per committed turn (id derived from the turn's
-- request id, so enqueueing twice is a no-op), sent with retries and backoff.
-- status: 'pending' | 'sent' | 'failed'.
CREATE TABLE outbox (
    id               TEXT PRIMARY KEY,
    organization_id  TEXT NOT NULL,
    channel_id       TEXT NOT NULL REFERENCES channels(id) ON DELETE CASCADE,
    conversation     TEXT NOT NULL,
    messages         TEXT NOT NULL,
    status           TEXT NOT NULL DEFAULT 'pending',
    attempts         INTEGER NOT NULL DEFAULT 0,
    next_attempt_at  INTEGER NOT NULL,
    last_error       TEXT,
    platform_ids     TEXT,
    created_at       INTEGER NOT NULL,
    sent_at          INTEGER
);
CREATE INDEX outbox_due ON outbox(status, next_attempt_at);
