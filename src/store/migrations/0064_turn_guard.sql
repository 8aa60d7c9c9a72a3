-- Several nodes on one database (issue 15).
--
-- conversations.rev: the conversation's version, bumped by every committed turn (and by an
-- explicit close). A turn's read returns it and the turn's commit names it: the commit is
-- refused (`Stale`, and the engine runs the turn again from a new read) when the
-- conversation moved in between, so turns of one conversation never interleave, whichever
-- nodes run them.
ALTER TABLE conversations ADD COLUMN rev INTEGER NOT NULL DEFAULT 0;

-- broadcasts.lease_until: a worker claims the pending broadcasts it runs until this time
-- (Unix ms; NULL = unclaimed), so one node runs each; the turn that runs one still marks it
-- done only while it is pending, so a broadcast whose lease ran out is never sent twice.
ALTER TABLE broadcasts ADD COLUMN lease_until INTEGER;
