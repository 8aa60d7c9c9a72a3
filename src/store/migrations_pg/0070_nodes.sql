-- The botyard processes serving this database, each with its last heartbeat (see
-- `crate::cluster`): per-node shares of rate limits divide by the number of live nodes.
-- Not tenant data (a Citus reference table).
CREATE TABLE nodes (
    id          TEXT COLLATE "C" PRIMARY KEY,
    started_at  BIGINT NOT NULL,
    last_seen   BIGINT NOT NULL
);
CREATE INDEX nodes_last_seen ON nodes(last_seen);
