-- The botyard processes serving this database, each with its last heartbeat (see
-- `crate::cluster`): per-node shares of rate limits divide by the number of live nodes.
-- Not tenant data. A SQLite store has at most one serving node.
CREATE TABLE nodes (
    id          TEXT PRIMARY KEY,
    started_at  INTEGER NOT NULL,
    last_seen   INTEGER NOT NULL
);
CREATE INDEX nodes_last_seen ON nodes(last_seen);
