-- Chat-turn hot path (issue 3, performance), continued from 0050. A turn for a new user wrote
-- one random page in each of three per-user B-trees: participants_identity,
-- conversations_open_client and usage_daily (measured from the WAL of `botyard bench`: 88 of
-- 117 pages per group commit). The last two are now keyed by the participant's time-ordered
-- id first, so new users append at their tails and the turns of one commit share pages.
--
-- A client's participant: same organization, platform = channel kind, identifier = user id;
-- on a bot's OCS engine channel (kind 'ocs', user id = OCS session id) the session's own
-- participant. Turns used to give each OCS session an extra participant (platform 'ocs',
-- identifier = session id): its conversations move to the session's participant and the
-- extra rows go.
UPDATE conversations
    SET participant_id = (SELECT s.participant_id FROM ocs_sessions s
                          WHERE s.id = conversations.user_id)
    WHERE channel_id IN (SELECT id FROM channels WHERE kind = 'ocs')
      AND user_id IN (SELECT id FROM ocs_sessions);

-- An open conversation without a participant (its row was removed) could not be found any
-- more: it is closed.
UPDATE conversations SET status = 'closed', hold = NULL, ended_at = updated_at
    WHERE status = 'open' AND participant_id IS NULL;
DROP INDEX IF EXISTS conversations_open_client;
-- The user id stays in the key: one OCS participant may hold several open sessions.
CREATE UNIQUE INDEX conversations_open_participant
    ON conversations(participant_id, bot_id, channel_id, user_id) WHERE status = 'open';

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
           COALESCE(CASE WHEN ch.kind = 'ocs' THEN
                        (SELECT s.participant_id FROM ocs_sessions s WHERE s.id = u.user_id)
                    END,
                    p.id, 'user:' || u.user_id),
           SUM(u.messages)
    FROM usage_daily u
    LEFT JOIN channels ch ON ch.id = u.channel_id
    LEFT JOIN participants p ON p.organization_id = u.organization_id
        AND p.platform = ch.kind AND p.identifier = u.user_id
    GROUP BY 1, 2, 3, 4, 5;
DROP TABLE usage_daily;
ALTER TABLE usage_daily_0055 RENAME TO usage_daily;

DELETE FROM participants WHERE platform = 'ocs'
    AND NOT EXISTS (SELECT 1 FROM conversations c WHERE c.participant_id = participants.id)
    AND NOT EXISTS (SELECT 1 FROM ocs_sessions s WHERE s.participant_id = participants.id);
