-- The bytes of OCS chat uploads, in the database: every node of a cluster serves every file
-- (nodes share no disk), and a backup of the database holds them. Until 0063 they were files
-- `DATA/ocs-files/<id>`; the store moves those in once, right after this migration
-- (`store::uploads::import_disk_files`).
--
-- A table of its own rather than a column of ocs_files, so that listing and reading file
-- metadata never loads bytes. Keyed like its file by organization; the composite foreign key
-- (hence the unique index on ocs_files) makes a content row belong to its file's
-- organization, and deleting a file (the expiry sweep, a refused upload, an organization's
-- deletion) deletes its bytes by cascade.
CREATE UNIQUE INDEX ocs_files_org_id ON ocs_files (organization_id, id);

CREATE TABLE ocs_file_content (
    organization_id TEXT NOT NULL,
    file_id         INTEGER NOT NULL,
    content         BLOB NOT NULL,
    PRIMARY KEY (organization_id, file_id),
    FOREIGN KEY (organization_id, file_id)
        REFERENCES ocs_files (organization_id, id) ON DELETE CASCADE
);
