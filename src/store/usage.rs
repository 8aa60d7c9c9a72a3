//! Usage counters (studio-api §2.9): messages and distinct clients per window, from the
//! per-day, per-client counters every turn updates (kept in low-data mode too).

use super::db::{Db, params};
use super::ids::{civil_from_days, day_of, days_from_civil};
use super::{Result, Store, UsageDay, UsageReport, UsageWindow};

fn window(c: &Db, org: &str, bot: &str, from_day: i64, to_day: i64) -> Result<UsageWindow> {
    // A client is a (channel, client) pair: joined with a byte neither id contains.
    let sep = c.pick("char(31)", "chr(31)");
    let (messages, clients) = c
        .prepare_cached(&format!(
            "SELECT COALESCE(SUM(messages), 0), COUNT(DISTINCT channel_id || {sep} || client)
             FROM usage_daily WHERE bot_id = ?1 AND organization_id = ?2 AND day >= ?3 AND day < ?4"
        ))?
        .query_row(params![bot, org, from_day, to_day], |r| {
            Ok((r.get(0)?, r.get(1)?))
        })?;
    Ok(UsageWindow { messages, clients })
}

impl Store {
    /// Usage of a bot at `now` (UTC): current calendar month, the previous one, and the last
    /// 30 days. Counted per UTC day, so `last30d` covers today and the 29 days before.
    pub fn usage(&self, org: &str, bot: &str, now: i64) -> Result<UsageReport> {
        let today = day_of(now);
        let (y, m, _) = civil_from_days(today);
        let month_start = days_from_civil(y, m, 1);
        let (py, pm) = if m == 1 { (y - 1, 12) } else { (y, m - 1) };
        let prev_start = days_from_civil(py, pm, 1);
        self.read(|c| {
            Ok(UsageReport {
                currentmonth: window(c, org, bot, month_start, today + 1)?,
                last30d: window(c, org, bot, today - 29, today + 1)?,
                lastmonth: window(c, org, bot, prev_start, month_start)?,
            })
        })
    }

    /// Messages and active clients per day over `[from_day, to_day)` (days with no traffic
    /// are absent).
    pub fn usage_by_day(
        &self,
        org: &str,
        bot: &str,
        from_day: i64,
        to_day: i64,
    ) -> Result<Vec<UsageDay>> {
        self.read(|c| {
            let mut st = c.prepare_cached(
                "SELECT day, SUM(messages), COUNT(*) FROM usage_daily
                 WHERE bot_id = ?1 AND organization_id = ?2 AND day >= ?3 AND day < ?4
                 GROUP BY day ORDER BY day",
            )?;
            st.query_map(params![bot, org, from_day, to_day], |r| {
                Ok(UsageDay {
                    day: r.get(0)?,
                    messages: r.get(1)?,
                    clients: r.get(2)?,
                })
            })
        })
    }
}
