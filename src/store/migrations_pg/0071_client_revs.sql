-- As migrations/0071_client_revs.sql (what the table means is written there). Distributed by
-- organization_id, which leads its key.
CREATE TABLE client_revs (
    organization_id TEXT COLLATE "C" NOT NULL REFERENCES organizations(id) ON DELETE CASCADE,
    bot_id          TEXT COLLATE "C" NOT NULL,
    channel_id      TEXT COLLATE "C" NOT NULL,
    user_id         TEXT COLLATE "C" NOT NULL,
    rev             BIGINT NOT NULL,
    PRIMARY KEY (organization_id, bot_id, channel_id, user_id)
);
