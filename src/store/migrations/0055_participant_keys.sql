-- Chat-turn hot path (issue 3, performance), continued from 0050. A turn for a new user wrote
-- one random page in each of three per-user B-trees: participants_identity,
-- conversations_open_client and usage_daily (measured from the WAL of `botyard bench`: 88 of
-- 117 pages per group commit). The last two are now keyed by the participant's time-ordered
-- id, so new users append at their tails and the turns of one commit share those pages.

-- A conversation is found through its participant (same organization, platform = channel
-- kind, identifier = user id). Every conversation a turn creates has one; an open one
-- without (its participant row was removed) could not be found any more, so it is closed.
UPDATE conversations SET status = 'closed', hold = NULL, ended_at = updated_at
    WHERE status = 'open' AND participant_id IS NULL;
DROP INDEX IF EXISTS conversations_open_client;
CREATE UNIQUE INDEX conversations_open_participant
    ON conversations(participant_id, bot_id, channel_id) WHERE status = 'open';

-- Usage: one row per (bot, UTC day, channel, client) where client is the participant id
-- (`user:<user id>` for history whose participant is unknown).
CREATE TABLE usage_daily_0055 (
    organization_id  TEXT NOT NULL,
    bot_id           TEXT NOT NULL,
    day              INTEGER NOT NULL,
    channel_id       TEXT NOT NULL,
    client           TEXT NOT NULL,
    messages         INTEGER NOT NULL,
    PRIMARY KEY (bot_id, day, channel_id, client)
) WITHOUT ROWID;
INSERT INTO usage_daily_0055(organization_id, bot_id, day, channel_id, client, messages)
    SELECT u.organization_id, u.bot_id, u.day, u.channel_id,
           COALESCE(p.id, 'user:' || u.user_id), SUM(u.messages)
    FROM usage_daily u
    LEFT JOIN channels ch ON ch.id = u.channel_id
    LEFT JOIN participants p ON p.organization_id = u.organization_id
        AND p.platform = ch.kind AND p.identifier = u.user_id
    GROUP BY 1, 2, 3, 4, 5;
DROP TABLE usage_daily;
ALTER TABLE usage_daily_0055 RENAME TO usage_daily;
