-- Chat-turn hot path (issue 3, performance). Every index on a table a turn writes costs a
-- B-tree insert per row and, when its key is per user (random in the tree), a page of WAL per
-- turn. Keep only the indexes a query needs, and prefer keys that end in a time-ordered id
-- (they append at the tail, where the turns of one commit share pages).

-- Open-conversation lookups use conversations_open_client; nothing queries by
-- (bot, channel, user, created_at).
DROP INDEX IF EXISTS conversations_client;
-- Was (organization_id, bot_id, updated_at): moved on every turn that updates a conversation,
-- and lists order by id anyway. Org-scoped lists walk (organization_id, id) newest first and
-- stop at their LIMIT; (bot_id, id) serves bot deletes and the bots → conversations cascade.
DROP INDEX IF EXISTS conversations_org;
CREATE INDEX conversations_org ON conversations(organization_id, id);
CREATE INDEX conversations_bot ON conversations(bot_id, id);
-- Only a bot delete read messages by (organization_id, bot_id): it now goes through the
-- bot's conversations (messages_conversation).
DROP INDEX IF EXISTS messages_org_bot;
-- The primary key (bot_id, channel_id, user_id, key) serves every memories lookup.
DROP INDEX IF EXISTS memories_org;
