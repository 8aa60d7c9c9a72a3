-- `CHECK (x IN ('a', 'b', 'c'))` with three or more values makes SQLite build and free an
-- ephemeral table for the list at every INSERT or UPDATE of the row (a B-tree and a page
-- cache each time): on the chat path that was ~9% of the store writer's time (ocs_tasks is
-- written twice and ocs_messages twice per async chat message). The same constraints as
-- comparisons joined by OR cost a few opcodes. The two tables are rebuilt (SQLite cannot
-- alter a CHECK); nothing references them, ids are kept.
CREATE TABLE ocs_messages_0060 (
    id               INTEGER PRIMARY KEY,
    organization_id  TEXT NOT NULL,
    session_id       TEXT NOT NULL REFERENCES ocs_sessions(id) ON DELETE CASCADE,
    role             TEXT NOT NULL CHECK (role = 'user' OR role = 'assistant' OR role = 'system'),
    content          TEXT NOT NULL,
    metadata         TEXT NOT NULL DEFAULT '{}',
    tags             TEXT NOT NULL DEFAULT '[]',
    file_ids         TEXT NOT NULL DEFAULT '[]',
    created_at       INTEGER NOT NULL
);
INSERT INTO ocs_messages_0060(id, organization_id, session_id, role, content, metadata, tags,
                              file_ids, created_at)
    SELECT id, organization_id, session_id, role, content, metadata, tags, file_ids, created_at
    FROM ocs_messages;
DROP TABLE ocs_messages;
ALTER TABLE ocs_messages_0060 RENAME TO ocs_messages;
CREATE INDEX ocs_messages_session ON ocs_messages(session_id, created_at, id);

CREATE TABLE ocs_tasks_0060 (
    id               TEXT PRIMARY KEY,
    organization_id  TEXT NOT NULL,
    session_id       TEXT NOT NULL REFERENCES ocs_sessions(id) ON DELETE CASCADE,
    status           TEXT NOT NULL CHECK (status = 'queued' OR status = 'running'
                                          OR status = 'complete' OR status = 'error'),
    request          TEXT NOT NULL,
    message_id       INTEGER,
    error            TEXT,
    error_status     INTEGER,
    created_at       INTEGER NOT NULL,
    updated_at       INTEGER NOT NULL
);
INSERT INTO ocs_tasks_0060(id, organization_id, session_id, status, request, message_id, error,
                           error_status, created_at, updated_at)
    SELECT id, organization_id, session_id, status, request, message_id, error, error_status,
           created_at, updated_at
    FROM ocs_tasks;
DROP TABLE ocs_tasks;
ALTER TABLE ocs_tasks_0060 RENAME TO ocs_tasks;
CREATE INDEX ocs_tasks_pending ON ocs_tasks(created_at) WHERE status IN ('queued', 'running');
