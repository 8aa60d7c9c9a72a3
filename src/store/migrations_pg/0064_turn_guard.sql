-- As migrations/0064_turn_guard.sql (what the columns mean is written there).
ALTER TABLE conversations ADD COLUMN rev BIGINT NOT NULL DEFAULT 0;
ALTER TABLE broadcasts ADD COLUMN lease_until BIGINT;
