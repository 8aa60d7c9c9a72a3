//! The durable broadcast queue (studio-api §2.2): enqueued before the API answers, executed by
//! the engine's worker; the executing turn marks its row done in the same transaction.
//!
//! Exactly one node sends each broadcast, by two guards:
//! * a worker *claims* the rows it runs ([`Store::claim_broadcasts`]): a lease
//!   (`lease_until`) that other workers skip, taken on PostgreSQL with `FOR UPDATE SKIP
//!   LOCKED`, so nodes polling together split the queue instead of all running every row;
//! * the turn that runs a broadcast marks it done only while it is still pending, in the
//!   turn's own commit (`conversations::apply_turn`), and is refused otherwise: should a lease
//!   run out while a slow turn still runs and another node take the row, only one of the two
//!   turns commits (the other writes nothing, its reply is never sent).

use super::db::{OptionalExtension, Row, params};
use super::ids::{new_id, now_millis};
use super::{Error, QueuedBroadcast, Result, Store};
use serde_json::Value as Json;

fn queued_from_row(r: &Row) -> Result<QueuedBroadcast> {
    let req: String = r.get(4)?;
    Ok(QueuedBroadcast {
        id: r.get(0)?,
        organization_id: r.get(1)?,
        bot_id: r.get(2)?,
        channel_id: r.get(3)?,
        request: serde_json::from_str(&req).unwrap_or(Json::Null),
        attempts: r.get(5)?,
        created_at: r.get(6)?,
    })
}

impl Store {
    /// Queue a broadcast; returns its id once committed.
    pub async fn enqueue_broadcast(
        &self,
        org: &str,
        bot: &str,
        channel: &str,
        request: Json,
    ) -> Result<String> {
        let (org, bot, channel) = (org.to_string(), bot.to_string(), channel.to_string());
        self.write_async(move |c| {
            let id = new_id();
            let now = now_millis();
            // The channel (and its bot) may be gone while a server's key cache still knows
            // them: a plain 404, not a foreign-key failure.
            let n = c.execute(
                "INSERT INTO broadcasts(id, organization_id, bot_id, channel_id, request, status,
                                        created_at, updated_at)
                 SELECT CAST(?1 AS TEXT), ch.organization_id, ch.bot_id, ch.id, CAST(?5 AS TEXT),
                        'pending', CAST(?6 AS BIGINT), CAST(?6 AS BIGINT)
                 FROM channels ch WHERE ch.id = ?4 AND ch.organization_id = ?2
                 AND ch.bot_id = ?3",
                params![id, org, bot, channel, request.to_string(), now],
            )?;
            if n == 0 {
                return Err(Error::NotFound(format!("bot `{bot}` not found")));
            }
            Ok(id)
        })
        .await
    }

    /// Claim up to `limit` of the oldest pending broadcasts of all organizations that no
    /// worker holds, for `lease_ms` from `now` (for the worker; each row carries its
    /// organization, and running it is scoped by that). A claim is released when the
    /// broadcast is done or an attempt fails ([`Store::fail_broadcast`]); a worker that dies
    /// holding one leaves it to the others once the lease runs out.
    ///
    /// Guard: one statement that picks and leases the rows. SQLite's single writer runs it
    /// alone; on PostgreSQL the rows are picked `FOR UPDATE SKIP LOCKED` (a row another
    /// node's claim is taking is skipped) and the outer conditions are re-checked on the
    /// row's latest version, so a row is never claimed by two workers at once.
    pub fn claim_broadcasts(
        &self,
        limit: u32,
        now: i64,
        lease_ms: i64,
    ) -> Result<Vec<QueuedBroadcast>> {
        self.write(move |c| {
            let skip = c.pick("", " FOR UPDATE SKIP LOCKED");
            let mut rows = c.query_map(
                &format!(
                    "UPDATE broadcasts SET lease_until = ?2
                     WHERE id IN (SELECT id FROM broadcasts WHERE status = 'pending'
                         AND (lease_until IS NULL OR lease_until <= ?1)
                         ORDER BY created_at LIMIT ?3{skip})
                     AND status = 'pending' AND (lease_until IS NULL OR lease_until <= ?1)
                     RETURNING id, organization_id, bot_id, channel_id, request, attempts,
                         created_at"
                ),
                params![now, now.saturating_add(lease_ms), limit],
                queued_from_row,
            )?;
            // RETURNING has no order.
            rows.sort_by(|a, b| (a.created_at, &a.id).cmp(&(b.created_at, &b.id)));
            Ok(rows)
        })
    }

    /// Record a failed attempt and release the claim; after `max_attempts` the broadcast is
    /// marked failed. A broadcast no longer pending (done or failed meanwhile, e.g. by another
    /// node) is left as it is.
    pub async fn fail_broadcast(
        &self,
        org: &str,
        id: &str,
        error: &str,
        max_attempts: i64,
    ) -> Result<()> {
        let (org, id, error) = (org.to_string(), id.to_string(), error.to_string());
        self.write_async(move |c| {
            let n = c.execute(
                "UPDATE broadcasts SET attempts = attempts + 1, last_error = ?3, updated_at = ?4,
                    lease_until = NULL,
                    status = CASE WHEN attempts + 1 >= ?5 THEN 'failed' ELSE status END
                 WHERE id = ?1 AND organization_id = ?2 AND status = 'pending'",
                params![id, org, error, now_millis(), max_attempts],
            )?;
            if n == 0
                && !c
                    .prepare_cached(
                        "SELECT 1 FROM broadcasts WHERE id = ?1 AND organization_id = ?2",
                    )?
                    .exists([&id, &org])?
            {
                return Err(Error::NotFound(format!("broadcast `{id}` not found")));
            }
            Ok(())
        })
        .await
    }

    /// Status of a broadcast: (`pending`|`done`|`failed`, attempts, last error).
    pub fn broadcast_status(&self, org: &str, id: &str) -> Result<(String, i64, Option<String>)> {
        self.read(|c| {
            c.query_row(
                "SELECT status, attempts, last_error FROM broadcasts WHERE id = ?1 AND organization_id = ?2",
                [id, org],
                |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
            )
            .optional()?
            .ok_or_else(|| Error::NotFound(format!("broadcast `{id}` not found")))
        })
    }
}
