-- The bytes of OCS chat uploads (0063 in SQLite, which says why): a table of its own, keyed
-- like its file by organization, deleted with its file by cascade.
CREATE UNIQUE INDEX ocs_files_org_id ON ocs_files (organization_id, id);

CREATE TABLE ocs_file_content (
    organization_id TEXT COLLATE "C" NOT NULL,
    file_id         BIGINT NOT NULL,
    content         BYTEA NOT NULL,
    PRIMARY KEY (organization_id, file_id),
    FOREIGN KEY (organization_id, file_id)
        REFERENCES ocs_files (organization_id, id) ON DELETE CASCADE
);
-- Out of line and uncompressed: uploads are mostly images, PDFs and archives that are
-- compressed already, so TOAST's compression would spend CPU on every upload for nothing.
ALTER TABLE ocs_file_content ALTER COLUMN content SET STORAGE EXTERNAL;
