//! The durable broadcast queue (studio-api §2.2): enqueued before the API answers, executed by
//! the engine's worker; the executing turn marks its row done in the same transaction.

use super::ids::{new_id, now_millis};
use super::{Error, QueuedBroadcast, Result, Store};
use rusqlite::params;
use serde_json::Value as Json;

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
        self.write_async_lite(move |c| {
            let id = new_id();
            let now = now_millis();
            // The channel (and its bot) may be gone while a server's key cache still knows
            // them: a plain 404, not a foreign-key failure.
            let n = c.execute(
                "INSERT INTO broadcasts(id, organization_id, bot_id, channel_id, request, status,
                                        created_at, updated_at)
                 SELECT ?1, ?2, ?3, ?4, ?5, 'pending', ?6, ?6
                 WHERE EXISTS(SELECT 1 FROM channels WHERE id = ?4 AND organization_id = ?2
                              AND bot_id = ?3)",
                params![id, org, bot, channel, request.to_string(), now],
            )?;
            if n == 0 {
                return Err(Error::NotFound(format!("bot `{bot}` not found")));
            }
            Ok(id)
        })
        .await
    }

    /// The oldest pending broadcasts of all organizations (for the worker; each row carries
    /// its organization, and running it is scoped by that).
    pub fn pending_broadcasts(&self, limit: u32) -> Result<Vec<QueuedBroadcast>> {
        self.read_lite(|c| {
            let mut st = c.prepare_cached(
                "SELECT id, organization_id, bot_id, channel_id, request, attempts, created_at
                 FROM broadcasts WHERE status = 'pending' ORDER BY created_at LIMIT ?1",
            )?;
            let rows = st
                .query_map([limit], |r| {
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
                })?
                .collect::<rusqlite::Result<_>>()?;
            Ok(rows)
        })
    }

    /// Record a failed attempt; after `max_attempts` the broadcast is marked failed.
    pub async fn fail_broadcast(
        &self,
        org: &str,
        id: &str,
        error: &str,
        max_attempts: i64,
    ) -> Result<()> {
        let (org, id, error) = (org.to_string(), id.to_string(), error.to_string());
        self.write_async_lite(move |c| {
            let n = c.execute(
                "UPDATE broadcasts SET attempts = attempts + 1, last_error = ?3, updated_at = ?4,
                    status = CASE WHEN attempts + 1 >= ?5 THEN 'failed' ELSE status END
                 WHERE id = ?1 AND organization_id = ?2",
                params![id, org, error, now_millis(), max_attempts],
            )?;
            if n == 0 {
                return Err(Error::NotFound(format!("broadcast `{id}` not found")));
            }
            Ok(())
        })
        .await
    }

    /// Status of a broadcast: (`pending`|`done`|`failed`, attempts, last error).
    pub fn broadcast_status(&self, org: &str, id: &str) -> Result<(String, i64, Option<String>)> {
        self.read_lite(|c| {
            c.query_row(
                "SELECT status, attempts, last_error FROM broadcasts WHERE id = ?1 AND organization_id = ?2",
                [id, org],
                |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
            )
            .map_err(|e| match e {
                rusqlite::Error::QueryReturnedNoRows => Error::NotFound(format!("broadcast `{id}` not found")),
                e => e.into(),
            })
        })
    }
}
