-- Bytes of stored OCS files per organization (session_id '') and per chat session, kept by
-- triggers on ocs_files so that an upload's quota check is two primary-key lookups whatever
-- the number of files, and stays right whoever deletes files (expiry sweep, cascades).
-- A file row's size, session and organization never change after insert.
CREATE TABLE ocs_file_usage (
    organization_id TEXT NOT NULL REFERENCES organizations(id) ON DELETE CASCADE,
    session_id      TEXT NOT NULL,
    bytes           INTEGER NOT NULL,
    PRIMARY KEY (organization_id, session_id)
) WITHOUT ROWID;

INSERT INTO ocs_file_usage(organization_id, session_id, bytes)
    SELECT organization_id, '', SUM(size) FROM ocs_files GROUP BY organization_id;
INSERT INTO ocs_file_usage(organization_id, session_id, bytes)
    SELECT organization_id, session_id, SUM(size) FROM ocs_files
     WHERE session_id IS NOT NULL GROUP BY organization_id, session_id;

CREATE TRIGGER ocs_file_usage_insert AFTER INSERT ON ocs_files BEGIN
    INSERT INTO ocs_file_usage(organization_id, session_id, bytes)
        VALUES (NEW.organization_id, '', NEW.size)
        ON CONFLICT(organization_id, session_id) DO UPDATE SET bytes = bytes + excluded.bytes;
    INSERT INTO ocs_file_usage(organization_id, session_id, bytes)
        SELECT NEW.organization_id, NEW.session_id, NEW.size WHERE NEW.session_id IS NOT NULL
        ON CONFLICT(organization_id, session_id) DO UPDATE SET bytes = bytes + excluded.bytes;
END;

CREATE TRIGGER ocs_file_usage_delete AFTER DELETE ON ocs_files BEGIN
    UPDATE ocs_file_usage SET bytes = bytes - OLD.size
     WHERE organization_id = OLD.organization_id
       AND session_id IN ('', COALESCE(OLD.session_id, ''));
END;
