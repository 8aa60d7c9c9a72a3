-- Fair connector delivery (issue 14): the outbox sender claims work per organization and
-- per conversation, and the inbound worker reads its queue per organization.
--
-- outbox.status is now 'queued' | 'pending' | 'sending' | 'sent' | 'failed':
-- - only the oldest undelivered row of a conversation (its head) is 'pending' (due at
--   next_attempt_at) or 'sending' (claimed by a sender; next_attempt_at is the end of the
--   claim's lease, after which another sender may take it);
-- - the conversation's later rows are 'queued' behind it and one is promoted to 'pending'
--   when the head is sent or fails for good, so a claim never looks at them.
CREATE INDEX outbox_conversation ON outbox(channel_id, conversation, status);
CREATE INDEX outbox_org_due ON outbox(status, organization_id, next_attempt_at);
DROP INDEX outbox_due;
UPDATE outbox SET status = 'queued'
WHERE status = 'pending' AND EXISTS (
    SELECT 1 FROM outbox AS earlier
    WHERE earlier.channel_id = outbox.channel_id AND earlier.conversation = outbox.conversation
      AND earlier.status = 'pending' AND earlier.rowid < outbox.rowid);

CREATE INDEX inbound_events_org ON inbound_events(status, organization_id, created_at);
DROP INDEX inbound_events_pending;
