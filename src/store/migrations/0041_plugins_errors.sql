-- The recent failed calls of each plugin (App() errors, refused or failed webhooks, failed
-- deliveries), listed by the admin UI. The store keeps the newest 20 per (organization,
-- plugin); the reason is the host's, the same text as its log line.
CREATE TABLE plugin_errors (
    id               INTEGER PRIMARY KEY AUTOINCREMENT,
    organization_id  TEXT NOT NULL REFERENCES organizations(id) ON DELETE CASCADE,
    plugin           TEXT NOT NULL,
    operation        TEXT NOT NULL,          -- 'app' | 'webhook' | 'deliver'
    channel_id       TEXT,
    message          TEXT NOT NULL,
    at               INTEGER NOT NULL
);
CREATE INDEX plugin_errors_by_plugin ON plugin_errors(organization_id, plugin, id);
