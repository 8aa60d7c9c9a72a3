//! Bots, their working flows, and builds (immutable versions).
//!
//! Concurrency (PostgreSQL runs write jobs side by side, on several nodes): every write job
//! that reads a bot's state and then writes from it (a patch of the bot row, a flow's
//! position `MAX(position) + 1`, a build number `MAX(seq) + 1`, "is this the default flow"
//! before deleting it) first locks the bot's row with [`lock_bot`] (`FOR UPDATE` on
//! PostgreSQL; SQLite's single writer already runs jobs one at a time). Jobs of one bot are
//! thus serialized; jobs of different bots never wait on each other. Name uniqueness (bots
//! per organization, flows per bot, case-insensitive) is left to the unique indexes: the
//! loser of a race gets `Conflict`.

use super::db::{Db, OptionalExtension, Row, params};
use super::ids::{new_id, now_millis};
use super::{
    Bot, BotPatch, BotVersion, Error, Flow, FlowPatch, NewBot, NewFlow, Result, Snapshot, Store,
};
use serde_json::{Map, Value as Json};

const BOT_COLS: &str = "id, organization_id, name, description, default_flow_id, env, settings, \
                        custom_components, live_version_id, rev, created_at, updated_at";
const FLOW_COLS: &str =
    "id, organization_id, bot_id, name, description, content, commands, created_at, updated_at";
const VERSION_COLS: &str = "id, organization_id, bot_id, seq, snapshot, engine_version, created_at";

fn json_col<T: serde::de::DeserializeOwned>(r: &Row, i: usize) -> Result<T> {
    let s: String = r.get(i)?;
    serde_json::from_str(&s)
        .map_err(|e| Error::Other(format!("column {i}: stored JSON is malformed: {e}")))
}

pub(super) fn bot_from_row(r: &Row) -> Result<Bot> {
    Ok(Bot {
        id: r.get(0)?,
        organization_id: r.get(1)?,
        name: r.get(2)?,
        description: r.get(3)?,
        default_flow_id: r.get(4)?,
        env: json_col(r, 5)?,
        settings: json_col(r, 6)?,
        custom_components: json_col(r, 7)?,
        live_version_id: r.get(8)?,
        rev: r.get(9)?,
        created_at: r.get(10)?,
        updated_at: r.get(11)?,
    })
}

fn flow_from_row(r: &Row) -> Result<Flow> {
    Ok(Flow {
        id: r.get(0)?,
        organization_id: r.get(1)?,
        bot_id: r.get(2)?,
        name: r.get(3)?,
        description: r.get(4)?,
        content: r.get(5)?,
        commands: json_col(r, 6)?,
        created_at: r.get(7)?,
        updated_at: r.get(8)?,
    })
}

fn version_from_row(r: &Row) -> Result<BotVersion> {
    Ok(BotVersion {
        id: r.get(0)?,
        organization_id: r.get(1)?,
        bot_id: r.get(2)?,
        seq: r.get(3)?,
        snapshot: json_col(r, 4)?,
        engine_version: r.get(5)?,
        created_at: r.get(6)?,
    })
}

/// A flow name must be usable as `goto flow NAME`: letters, digits, `_` and `-`, not starting
/// with a digit or `-`.
pub fn check_flow_name(name: &str) -> Result<()> {
    let ok = !name.is_empty()
        && name.len() <= 100
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
        && !name.starts_with(|c: char| c.is_ascii_digit() || c == '-');
    if ok {
        Ok(())
    } else {
        Err(Error::Invalid(format!(
            "invalid flow name `{name}`: use letters, digits, `_` or `-`, not starting with a digit"
        )))
    }
}

/// The automatic command of a flow (studio-api §2.3): `/<name lowercased>`.
pub fn auto_command(name: &str) -> String {
    format!("/{}", name.to_lowercase())
}

/// User commands plus the automatic one, without duplicates (case-insensitive), in order.
fn with_auto_command(name: &str, commands: &[String]) -> Vec<String> {
    let mut out: Vec<String> = Vec::with_capacity(commands.len() + 1);
    let auto = auto_command(name);
    for c in commands.iter().map(|c| c.trim()).filter(|c| !c.is_empty()) {
        if !out.iter().any(|o| o.eq_ignore_ascii_case(c)) && !c.eq_ignore_ascii_case(&auto) {
            out.push(c.to_string());
        }
    }
    out.push(auto);
    out
}

pub(super) fn load_bot(c: &Db, org: &str, bot: &str) -> Result<Bot> {
    c.prepare_cached(&format!(
        "SELECT {BOT_COLS} FROM bots WHERE id = ?1 AND organization_id = ?2"
    ))?
    .query_row([bot, org], bot_from_row)
    .optional()?
    .ok_or_else(|| Error::NotFound(format!("bot `{bot}` not found")))
}

/// The bot's row, locked until the job's transaction ends (`FOR UPDATE` on PostgreSQL; on
/// SQLite the single writer runs one job at a time, so a plain read is the same guarantee).
/// Write jobs that decide from the bot's current state call this first: see the module doc.
pub(super) fn lock_bot(c: &Db, org: &str, bot: &str) -> Result<Bot> {
    c.prepare_cached(&format!(
        "SELECT {BOT_COLS} FROM bots WHERE id = ?1 AND organization_id = ?2{}",
        c.pick("", " FOR UPDATE")
    ))?
    .query_row([bot, org], bot_from_row)
    .optional()?
    .ok_or_else(|| Error::NotFound(format!("bot `{bot}` not found")))
}

fn load_flows(c: &Db, org: &str, bot: &str) -> Result<Vec<Flow>> {
    let mut st = c.prepare_cached(&format!(
        "SELECT {FLOW_COLS} FROM flows WHERE bot_id = ?1 AND organization_id = ?2
         ORDER BY position, created_at"
    ))?;
    st.query_map([bot, org], flow_from_row)
}

/// A flow by id, or by name (case-insensitive).
fn find_flow(c: &Db, org: &str, bot: &str, id_or_name: &str) -> Result<Option<Flow>> {
    c.prepare_cached(&format!(
        "SELECT {FLOW_COLS} FROM flows WHERE bot_id = ?1 AND organization_id = ?2
         AND (id = ?3 OR lower(name) = lower(?3)) ORDER BY id = ?3 DESC LIMIT 1"
    ))?
    .query_row(params![bot, org, id_or_name], flow_from_row)
    .optional()
}

/// `airules`: each flow's user commands become those of the rules naming it (none when no
/// rule names it); the automatic command stays. Unknown flow names → `NotFound` before any
/// change (the caller's transaction is rolled back anyway).
fn set_flow_commands(
    c: &Db,
    org: &str,
    bot: &str,
    rules: &[(String, Vec<String>)],
    now: i64,
) -> Result<()> {
    let flows = load_flows(c, org, bot)?;
    if let Some((name, _)) = rules
        .iter()
        .find(|(name, _)| !flows.iter().any(|f| f.name.eq_ignore_ascii_case(name)))
    {
        return Err(Error::NotFound(format!("flow `{name}` not found")));
    }
    let mut st = c.prepare_cached(
        "UPDATE flows SET commands = ?3, updated_at = ?4 WHERE id = ?1 AND organization_id = ?2",
    )?;
    for f in &flows {
        let user: Vec<String> = rules
            .iter()
            .filter(|(name, _)| f.name.eq_ignore_ascii_case(name))
            .flat_map(|(_, cmds)| cmds.iter().cloned())
            .collect();
        let commands = with_auto_command(&f.name, &user);
        if commands != f.commands {
            st.execute(params![f.id, org, serde_json::to_string(&commands)?, now])?;
        }
    }
    Ok(())
}

fn bump_rev(c: &Db, org: &str, bot: &str, now: i64) -> Result<()> {
    c.prepare_cached(
        "UPDATE bots SET rev = rev + 1, updated_at = ?3 WHERE id = ?1 AND organization_id = ?2",
    )?
    .execute(params![bot, org, now])?;
    Ok(())
}

/// Insert a flow at the end of the bot's list. Its position is `MAX(position) + 1`: the
/// caller holds the bot's row lock ([`lock_bot`]) or has just created the bot in this job.
fn insert_flow(c: &Db, org: &str, bot: &str, f: &NewFlow, now: i64) -> Result<Flow> {
    check_flow_name(&f.name)?;
    let position: i64 = c.query_row(
        "SELECT COALESCE(MAX(position), -1) + 1 FROM flows WHERE bot_id = ?1",
        [bot],
        |r| r.get(0),
    )?;
    let flow = Flow {
        id: new_id(),
        organization_id: org.to_string(),
        bot_id: bot.to_string(),
        name: f.name.clone(),
        description: f.description.clone(),
        content: f.content.clone(),
        commands: with_auto_command(&f.name, &f.commands),
        created_at: now,
        updated_at: now,
    };
    c.execute(
        "INSERT INTO flows(id, organization_id, bot_id, name, description, content, commands,
                           position, created_at, updated_at)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?9)",
        params![
            flow.id,
            org,
            bot,
            flow.name,
            flow.description,
            flow.content,
            serde_json::to_string(&flow.commands)?,
            position,
            now
        ],
    )
    .map_err(|e| match e {
        Error::Conflict(_) => Error::Conflict(format!("a flow named `{}` exists", f.name)),
        e => e,
    })?;
    Ok(flow)
}

/// Insert a bot with its flows (`name` checked by the caller; at least one flow): the body
/// of [`Store::create_bot`], also part of first-run setup's single job.
pub(super) fn insert_bot(c: &Db, org: &str, new: NewBot, name: &str) -> Result<(Bot, Vec<Flow>)> {
    let now = now_millis();
    let id = new_id();
    c.execute(
        "INSERT INTO bots(id, organization_id, name, description, env, settings,
                          custom_components, created_at, updated_at)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?8)",
        params![
            id,
            org,
            name,
            new.description,
            serde_json::to_string(&new.env)?,
            serde_json::to_string(&new.settings)?,
            serde_json::to_string(&new.custom_components)?,
            now
        ],
    )
    .map_err(|e| bot_name_conflict(e, name))?;
    let mut flows = Vec::with_capacity(new.flows.len());
    for f in &new.flows {
        flows.push(insert_flow(c, org, &id, f, now)?);
    }
    let default = match &new.default_flow {
        Some(d) => flows
            .iter()
            .find(|f| f.name.eq_ignore_ascii_case(d) || f.id == *d)
            .ok_or_else(|| Error::Invalid(format!("default flow `{d}` is not a flow")))?,
        None => &flows[0],
    };
    c.execute(
        "UPDATE bots SET default_flow_id = ?1 WHERE id = ?2",
        params![default.id, id],
    )?;
    Ok((load_bot(c, org, &id)?, flows))
}

fn bot_name_conflict(e: Error, name: &str) -> Error {
    match e {
        Error::Conflict(_) => Error::Conflict(format!("a bot named `{name}` exists")),
        e => e,
    }
}

impl Store {
    /// Create a bot with its flows (at least one) in one transaction.
    pub fn create_bot(&self, org: &str, new: NewBot) -> Result<(Bot, Vec<Flow>)> {
        let name = new.name.trim().to_string();
        if name.is_empty() || name.len() > 200 {
            return Err(Error::Invalid(
                "a bot name must have 1 to 200 characters".into(),
            ));
        }
        if new.flows.is_empty() {
            return Err(Error::Invalid("a bot needs at least one flow".into()));
        }
        let org = org.to_string();
        self.write(move |c| insert_bot(c, &org, new, &name))
    }

    pub fn list_bots(&self, org: &str) -> Result<Vec<Bot>> {
        self.read(|c| {
            let mut st = c.prepare_cached(&format!(
                "SELECT {BOT_COLS} FROM bots WHERE organization_id = ?1 ORDER BY created_at"
            ))?;
            st.query_map([org], bot_from_row)
        })
    }

    pub fn get_bot(&self, org: &str, bot: &str) -> Result<Bot> {
        self.read(|c| load_bot(c, org, bot))
    }

    /// A bot by id or name (case-insensitive), within `org`.
    pub fn find_bot(&self, org: &str, id_or_name: &str) -> Result<Bot> {
        self.read(|c| {
            c.query_row(
                &format!(
                    "SELECT {BOT_COLS} FROM bots WHERE organization_id = ?1
                     AND (id = ?2 OR lower(name) = lower(?2)) ORDER BY id = ?2 DESC LIMIT 1"
                ),
                [org, id_or_name],
                bot_from_row,
            )
            .optional()?
            .ok_or_else(|| Error::NotFound(format!("bot `{id_or_name}` not found")))
        })
    }

    /// The bot and its working flows, read in one snapshot.
    pub fn bot_with_flows(&self, org: &str, bot: &str) -> Result<(Bot, Vec<Flow>)> {
        self.read(|c| {
            // A read connection runs each statement on its own (no transaction): the two
            // reads share one snapshot inside a read-only transaction, ended here whatever
            // happens so the connection goes back to the pool clean.
            c.execute_batch(c.pick("BEGIN", "BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY"))?;
            let out = load_bot(c, org, bot).and_then(|b| Ok((b, load_flows(c, org, bot)?)));
            let end = c.execute_batch(if out.is_ok() { "COMMIT" } else { "ROLLBACK" });
            let out = out?;
            end?;
            Ok(out)
        })
    }

    /// Partial update (studio-api §2.4). Guard: the bot row is locked ([`lock_bot`]) before
    /// it is read, so two patches of one bot apply one after the other (no lost update).
    pub fn update_bot(&self, org: &str, bot: &str, patch: BotPatch) -> Result<Bot> {
        let (org, bot) = (org.to_string(), bot.to_string());
        self.write(move |c| {
            let now = now_millis();
            let mut b = lock_bot(c, &org, &bot)?;
            if let Some(name) = patch.name {
                let name = name.trim().to_string();
                if name.is_empty() || name.len() > 200 {
                    return Err(Error::Invalid(
                        "a bot name must have 1 to 200 characters".into(),
                    ));
                }
                b.name = name;
            }
            if let Some(d) = patch.description {
                b.description = d;
            }
            if let Some(d) = patch.default_flow {
                let f = find_flow(c, &org, &bot, &d)?.ok_or_else(|| {
                    Error::Invalid(format!("default_flow `{d}` is not a flow of this bot"))
                })?;
                b.default_flow_id = Some(f.id);
            }
            if let Some(env) = patch.env {
                b.env = env;
            }
            if let Some(s) = patch.settings {
                b.settings = s;
            }
            if let Some(cc) = patch.custom_components {
                b.custom_components = cc;
            }
            if let Some(rules) = &patch.flow_commands {
                set_flow_commands(c, &org, &bot, rules, now)?;
            }
            c.execute(
                "UPDATE bots SET name = ?3, description = ?4, default_flow_id = ?5, env = ?6,
                        settings = ?7, custom_components = ?8, rev = rev + 1, updated_at = ?9
                 WHERE id = ?1 AND organization_id = ?2",
                params![
                    bot,
                    org,
                    b.name,
                    b.description,
                    b.default_flow_id,
                    serde_json::to_string(&b.env)?,
                    serde_json::to_string(&b.settings)?,
                    serde_json::to_string(&b.custom_components)?,
                    now
                ],
            )
            .map_err(|e| bot_name_conflict(e, &b.name))?;
            load_bot(c, &org, &bot)
        })
    }

    /// Delete a bot and everything hanging from it. The bot row is locked first, so the
    /// delete waits for (and is not interleaved with) the bot's other write jobs.
    pub fn delete_bot(&self, org: &str, bot: &str) -> Result<()> {
        let (org, bot) = (org.to_string(), bot.to_string());
        self.write(move |c| {
            lock_bot(c, &org, &bot)?;
            // Rows without a foreign key to bots (hot-path tables) are removed by hand.
            for sql in [
                "DELETE FROM memories WHERE bot_id = ?1 AND organization_id = ?2",
                "DELETE FROM usage_daily WHERE bot_id = ?1 AND organization_id = ?2",
                "DELETE FROM messages WHERE conversation_id IN (SELECT id FROM conversations
                 WHERE bot_id = ?1 AND organization_id = ?2)",
            ] {
                c.execute(sql, [&bot, &org])?;
            }
            let n = c.execute(
                "DELETE FROM bots WHERE id = ?1 AND organization_id = ?2",
                [&bot, &org],
            )?;
            if n == 0 {
                return Err(Error::NotFound(format!("bot `{bot}` not found")));
            }
            super::channels::bump_auth_epoch(c)?;
            Ok(())
        })
    }

    pub fn list_flows(&self, org: &str, bot: &str) -> Result<Vec<Flow>> {
        self.read(|c| {
            load_bot(c, org, bot)?;
            load_flows(c, org, bot)
        })
    }

    /// A flow by id or name (case-insensitive).
    pub fn get_flow(&self, org: &str, bot: &str, id_or_name: &str) -> Result<Flow> {
        self.read(|c| {
            find_flow(c, org, bot, id_or_name)?
                .ok_or_else(|| Error::NotFound(format!("flow `{id_or_name}` not found")))
        })
    }

    /// Create a flow; the automatic `/<name>` command is added. Duplicate name → conflict
    /// (unique index). Guard: the bot row is locked first, which makes the flow's position
    /// (`MAX(position) + 1`) and the default-flow check atomic.
    pub fn create_flow(&self, org: &str, bot: &str, new: NewFlow) -> Result<Flow> {
        let (org, bot) = (org.to_string(), bot.to_string());
        self.write(move |c| {
            let now = now_millis();
            let b = lock_bot(c, &org, &bot)?;
            let f = insert_flow(c, &org, &bot, &new, now)?;
            if b.default_flow_id.is_none() {
                c.execute(
                    "UPDATE bots SET default_flow_id = ?1 WHERE id = ?2",
                    params![f.id, bot],
                )?;
            }
            bump_rev(c, &org, &bot, now)?;
            Ok(f)
        })
    }

    /// Partial update of a flow (id or name); a rename keeps the automatic command in step.
    /// Guard: the bot row is locked first (two patches of one flow: no lost update); a rename
    /// to a taken name is the unique index's conflict.
    pub fn update_flow(&self, org: &str, bot: &str, flow: &str, patch: FlowPatch) -> Result<Flow> {
        let (org, bot, flow) = (org.to_string(), bot.to_string(), flow.to_string());
        self.write(move |c| {
            let now = now_millis();
            lock_bot(c, &org, &bot)?;
            let mut f = find_flow(c, &org, &bot, &flow)?
                .ok_or_else(|| Error::NotFound(format!("flow `{flow}` not found")))?;
            let old_auto = auto_command(&f.name);
            let mut user_cmds: Vec<String> = f
                .commands
                .iter()
                .filter(|c| **c != old_auto)
                .cloned()
                .collect();
            if let Some(name) = patch.name {
                check_flow_name(&name)?;
                f.name = name;
            }
            if let Some(content) = patch.content {
                f.content = content;
            }
            if let Some(d) = patch.description {
                f.description = d;
            }
            if let Some(cmds) = patch.commands {
                user_cmds = cmds;
            }
            f.commands = with_auto_command(&f.name, &user_cmds);
            f.updated_at = now;
            c.execute(
                "UPDATE flows SET name = ?3, content = ?4, description = ?5, commands = ?6,
                        updated_at = ?7 WHERE id = ?1 AND organization_id = ?2",
                params![
                    f.id,
                    org,
                    f.name,
                    f.content,
                    f.description,
                    serde_json::to_string(&f.commands)?,
                    now
                ],
            )
            .map_err(|e| match e {
                Error::Conflict(_) => Error::Conflict(format!("a flow named `{}` exists", f.name)),
                e => e,
            })?;
            bump_rev(c, &org, &bot, now)?;
            Ok(f)
        })
    }

    /// Delete a flow (id or name). The default flow cannot be deleted (conflict). Guard: the
    /// bot row is locked first, so the flow cannot become the default meanwhile.
    pub fn delete_flow(&self, org: &str, bot: &str, flow: &str) -> Result<()> {
        let (org, bot, flow) = (org.to_string(), bot.to_string(), flow.to_string());
        self.write(move |c| {
            let b = lock_bot(c, &org, &bot)?;
            let f = find_flow(c, &org, &bot, &flow)?
                .ok_or_else(|| Error::NotFound(format!("flow `{flow}` not found")))?;
            if b.default_flow_id.as_deref() == Some(f.id.as_str()) {
                return Err(Error::Conflict(format!(
                    "flow `{}` is the bot's default flow: choose another default first",
                    f.name
                )));
            }
            c.execute(
                "DELETE FROM flows WHERE id = ?1 AND organization_id = ?2",
                [&f.id, &org],
            )?;
            bump_rev(c, &org, &bot, now_millis())?;
            Ok(())
        })
    }

    /// Replace all flows of a bot by `flows` (matched by name: kept ids for existing names,
    /// new flows created, missing ones deleted) and set the default flow — `bot import`.
    /// Guard: the bot row is locked first (the whole replacement is one step for the bot's
    /// other write jobs).
    pub fn replace_flows(
        &self,
        org: &str,
        bot: &str,
        flows: Vec<NewFlow>,
        default_flow: Option<String>,
        env: Option<Map<String, Json>>,
    ) -> Result<Vec<Flow>> {
        if flows.is_empty() {
            return Err(Error::Invalid("a bot needs at least one flow".into()));
        }
        let (org, bot) = (org.to_string(), bot.to_string());
        self.write(move |c| {
            let now = now_millis();
            lock_bot(c, &org, &bot)?;
            let existing = load_flows(c, &org, &bot)?;
            c.execute(
                "UPDATE bots SET default_flow_id = NULL WHERE id = ?1",
                [&bot],
            )?;
            for old in &existing {
                if !flows.iter().any(|f| f.name.eq_ignore_ascii_case(&old.name)) {
                    c.execute("DELETE FROM flows WHERE id = ?1", [&old.id])?;
                }
            }
            for f in &flows {
                check_flow_name(&f.name)?;
                match existing
                    .iter()
                    .find(|o| o.name.eq_ignore_ascii_case(&f.name))
                {
                    Some(old) => {
                        c.execute(
                            "UPDATE flows SET name = ?2, content = ?3, description = ?4,
                                    commands = ?5, updated_at = ?6 WHERE id = ?1",
                            params![
                                old.id,
                                f.name,
                                f.content,
                                f.description,
                                serde_json::to_string(&with_auto_command(&f.name, &f.commands))?,
                                now
                            ],
                        )?;
                    }
                    None => {
                        insert_flow(c, &org, &bot, f, now)?;
                    }
                }
            }
            let all = load_flows(c, &org, &bot)?;
            let want = default_flow.unwrap_or_else(|| all[0].name.clone());
            let d = all
                .iter()
                .find(|f| f.name.eq_ignore_ascii_case(&want) || f.id == want)
                .ok_or_else(|| Error::Invalid(format!("default flow `{want}` is not a flow")))?;
            c.execute(
                "UPDATE bots SET default_flow_id = ?1 WHERE id = ?2",
                params![d.id, bot],
            )?;
            if let Some(env) = env {
                c.execute(
                    "UPDATE bots SET env = ?1 WHERE id = ?2",
                    params![serde_json::to_string(&env)?, bot],
                )?;
            }
            bump_rev(c, &org, &bot, now)?;
            Ok(all)
        })
    }

    /// Store a new immutable build and make it the live version. The caller (the engine) has
    /// validated `snapshot` with the interpreter. Guard: the bot row is locked first, so the
    /// build number `MAX(seq) + 1` is taken by one build at a time (the unique index on
    /// `(bot_id, seq)` backs it up).
    pub fn create_version(
        &self,
        org: &str,
        bot: &str,
        snapshot: Snapshot,
        engine_version: &str,
    ) -> Result<BotVersion> {
        let (org, bot, ev) = (org.to_string(), bot.to_string(), engine_version.to_string());
        self.write(move |c| {
            let now = now_millis();
            lock_bot(c, &org, &bot)?;
            let seq: i64 = c.query_row(
                "SELECT COALESCE(MAX(seq), 0) + 1 FROM bot_versions WHERE bot_id = ?1",
                [&bot],
                |r| r.get(0),
            )?;
            let v = BotVersion {
                id: new_id(),
                organization_id: org.clone(),
                bot_id: bot.clone(),
                seq,
                snapshot,
                engine_version: ev,
                created_at: now,
            };
            c.execute(
                "INSERT INTO bot_versions(id, organization_id, bot_id, seq, snapshot,
                                          engine_version, created_at)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
                params![v.id, org, bot, seq, serde_json::to_string(&v.snapshot)?, v.engine_version, now],
            )?;
            c.execute(
                "UPDATE bots SET live_version_id = ?3, updated_at = ?4 WHERE id = ?1 AND organization_id = ?2",
                params![bot, org, v.id, now],
            )?;
            Ok(v)
        })
    }

    /// A build by id, or the latest (`None` or `"latest"`).
    pub fn get_version(&self, org: &str, bot: &str, version: Option<&str>) -> Result<BotVersion> {
        self.read(|c| {
            let found = match version.filter(|v| *v != "latest") {
                Some(v) => c
                    .prepare_cached(&format!(
                        "SELECT {VERSION_COLS} FROM bot_versions
                         WHERE id = ?1 AND bot_id = ?2 AND organization_id = ?3"
                    ))?
                    .query_row([v, bot, org], version_from_row)
                    .optional()?,
                None => c
                    .prepare_cached(&format!(
                        "SELECT {VERSION_COLS} FROM bot_versions
                         WHERE bot_id = ?1 AND organization_id = ?2 ORDER BY seq DESC LIMIT 1"
                    ))?
                    .query_row([bot, org], version_from_row)
                    .optional()?,
            };
            found.ok_or_else(|| Error::NotFound("version not found".into()))
        })
    }

    /// Builds of a bot, newest first.
    pub fn list_versions(&self, org: &str, bot: &str, limit: u32) -> Result<Vec<BotVersion>> {
        self.read(|c| {
            let mut st = c.prepare_cached(&format!(
                "SELECT {VERSION_COLS} FROM bot_versions WHERE bot_id = ?1 AND organization_id = ?2
                 ORDER BY seq DESC LIMIT ?3"
            ))?;
            st.query_map(params![bot, org, limit], version_from_row)
        })
    }

    /// Make `version` (or the working flows, `None`) serve traffic: publish / rollback.
    pub fn set_live_version(&self, org: &str, bot: &str, version: Option<&str>) -> Result<Bot> {
        let (org, bot, version) = (
            org.to_string(),
            bot.to_string(),
            version.map(str::to_string),
        );
        self.write(move |c| {
            if let Some(v) = &version {
                let ok: bool = c.query_row(
                    "SELECT EXISTS(SELECT 1 FROM bot_versions WHERE id = ?1 AND bot_id = ?2 AND organization_id = ?3)",
                    [v, &bot, &org],
                    |r| r.get(0),
                )?;
                if !ok {
                    return Err(Error::NotFound(format!("version `{v}` not found")));
                }
            }
            let n = c.execute(
                "UPDATE bots SET live_version_id = ?3, updated_at = ?4 WHERE id = ?1 AND organization_id = ?2",
                params![bot, org, version, now_millis()],
            )?;
            if n == 0 {
                return Err(Error::NotFound(format!("bot `{bot}` not found")));
            }
            load_bot(c, &org, &bot)
        })
    }

    /// `(live_version_id, rev)` of a bot: enough to tell whether a compiled copy is current.
    pub fn bot_code_key(&self, org: &str, bot: &str) -> Result<(Option<String>, i64)> {
        self.read(|c| bot_code_key_on(c, org, bot))
    }

    /// What the engine needs to pick the code serving a bot: the bot row and, when it has a
    /// live build, that build (one read).
    pub fn live_code(&self, org: &str, bot: &str) -> Result<(Bot, Option<BotVersion>)> {
        self.read(|c| live_code_on(c, org, bot))
    }
}

/// `(live_version_id, rev)` of a bot: what decides whether a compiled copy is current.
pub(super) fn bot_code_key_on(c: &Db, org: &str, bot: &str) -> Result<(Option<String>, i64)> {
    c.prepare_cached(
        "SELECT live_version_id, rev FROM bots WHERE id = ?1 AND organization_id = ?2",
    )?
    .query_row([bot, org], |r| Ok((r.get(0)?, r.get(1)?)))
    .optional()?
    .ok_or_else(|| Error::NotFound(format!("bot `{bot}` not found")))
}

pub(super) fn live_code_on(c: &Db, org: &str, bot: &str) -> Result<(Bot, Option<BotVersion>)> {
    let b = load_bot(c, org, bot)?;
    let v = match &b.live_version_id {
        Some(v) => c
            .prepare_cached(&format!(
                "SELECT {VERSION_COLS} FROM bot_versions WHERE id = ?1 AND organization_id = ?2"
            ))?
            .query_row([v, org], version_from_row)
            .optional()?,
        None => None,
    };
    Ok((b, v))
}
