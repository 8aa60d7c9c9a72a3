//! Variables (spec §3.2–3.4): name resolution (constant → local → memory), the special names
//! (`event`, `_metadata` with its computed `_context`, `_env`, `_memory`), assignment with paths
//! and compound operators, and memory writes.

use serde_json::Value as Json;

use super::fxhash::find;
use super::{Evaluator, R};
use crate::api::MemoryWrite;
use crate::ast::{AssignOp, BinOp, Pos};
use crate::value::{Kind, Map, Value};

/// Where a name resolved.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Slot {
    Const,
    /// Index in the frame's locals.
    Local(usize),
    /// Index in the memories.
    Memory(usize),
}

/// One evaluated step of a path: `.name` or `[value]`.
#[derive(Debug)]
pub(crate) enum Access {
    Key(String, Pos),
    Index(Value, Pos),
}

impl Access {
    pub fn pos(&self) -> Pos {
        match self {
            Access::Key(_, p) | Access::Index(_, p) => *p,
        }
    }
}

pub(crate) const ERR_SECURE_ASSIGN: &str = "Assignation of secure variable is not allowed";

pub(crate) fn undefined_reason(name: &str) -> String {
    format!("< {name} > is used before it was saved in memory")
}

pub(crate) fn key_reason(key: &str) -> String {
    format!("[{key}] key does not exist")
}

pub(crate) fn index_reason(i: i64) -> String {
    // A negative index shows as its unsigned reinterpretation, as the reference does.
    format!(
        "[{}] index must be lower than or equal to array.length()",
        i as u64
    )
}

impl Evaluator<'_> {
    #[inline]
    pub fn slot(&self, name: &str) -> Option<Slot> {
        if find(&self.bot.flows[self.frame.flow].constants, name).is_some() {
            Some(Slot::Const)
        } else if let Some(i) = find(&self.frame.locals, name) {
            Some(Slot::Local(i))
        } else if self.frame.in_fn {
            None
        } else {
            find(&self.memories, name).map(Slot::Memory)
        }
    }

    /// The value of a plain (non-special) variable.
    #[inline]
    pub fn var(&self, name: &str) -> Option<&Value> {
        let constants = &self.bot.flows[self.frame.flow].constants;
        if let Some(i) = find(constants, name) {
            return constants.get_index(i).map(|(_, v)| v);
        }
        if let Some(i) = find(&self.frame.locals, name) {
            return self.frame.locals.get_index(i).map(|(_, v)| v);
        }
        if self.frame.in_fn {
            None
        } else {
            self.memories.get(name)
        }
    }

    /// The variable `slot` points at (resolved by index: valid until the scope changes).
    pub fn var_mut(&mut self, slot: Slot) -> Option<&mut Value> {
        match slot {
            Slot::Const => None,
            Slot::Local(i) => self.frame.locals.get_index_mut(i).map(|(_, v)| v),
            Slot::Memory(i) => self.memories.get_index_mut(i).map(|(_, v)| v),
        }
    }

    /// Put a value back into variable `name` of the kind `slot` names, by name (the scope may
    /// have changed while it was out, e.g. through a closure's `forget`).
    pub fn put_back(&mut self, name: &str, slot: Slot, value: Value) {
        let cell = match slot {
            Slot::Const => None,
            Slot::Local(_) => self.frame.locals.get_mut(name),
            Slot::Memory(_) => self.memories.get_mut(name),
        };
        if let Some(cell) = cell {
            *cell = value;
        }
    }

    /// Whether `name` is one of the special names handled outside the scopes.
    pub fn is_special(name: &str) -> bool {
        matches!(name.as_bytes().first(), Some(b'e' | b'_'))
            && matches!(name, "event" | "_metadata" | "_env" | "_memory")
    }

    /// Bare `event`: the event's value as a String, secure when the event is.
    pub fn event_string(&self) -> Value {
        Value::string(self.event.content_value.clone()).with_secure(self.event.secure)
    }

    /// `event` used with a path or method: the content object tagged with the content type.
    pub fn event_object(&mut self) -> Value {
        if self.event_obj.is_none() {
            self.event_obj = Some(crate::stdlib::event::from_event(&self.event));
        }
        self.event_obj.clone().unwrap_or_default()
    }

    /// `_metadata` as a whole value (`say _metadata`, `do m = _metadata`, its string form,
    /// methods on it): the conversation's metadata only. The computed `_context` is not part
    /// of it, as in the reference; it is reached by path (`_metadata._context.current_flow`),
    /// see [`Evaluator::metadata_with_context`].
    pub fn metadata_value(&self) -> Value {
        let v = crate::json::from_json(&self.metadata);
        if matches!(v.kind, Kind::Object(_)) {
            v
        } else {
            Value::object(Map::new())
        }
    }

    /// `_metadata` for a key/index read: the metadata plus `_context` computed for the current
    /// position (a `_context` key of the metadata itself is shadowed).
    pub fn metadata_with_context(&self) -> Value {
        let mut v = self.metadata_value();
        let mut c = Map::new();
        c.insert("current_flow".into(), Value::string(self.flow_name()));
        c.insert("current_step".into(), Value::string(self.step.clone()));
        c.insert(
            "default_flow".into(),
            Value::string(self.bot.source.default_flow.clone()),
        );
        if let Some(p) = &self.previous {
            c.insert("previous_flow".into(), Value::string(p.flow.clone()));
            c.insert("previous_step".into(), Value::string(p.step.clone()));
        }
        if let Kind::Object(m) = &mut v.kind {
            m.insert("_context".into(), Value::object(c));
        }
        v
    }

    /// `_memory`: memories merged with locals (locals win); in a function only its locals.
    pub fn memory_value(&self) -> Value {
        let mut m = Map::new();
        if !self.frame.in_fn {
            for (k, v) in &self.memories {
                m.insert(k.clone(), v.clone());
            }
        }
        for (k, v) in &self.frame.locals {
            m.insert(k.clone(), v.clone());
        }
        Value::object(m)
    }

    pub fn special_value(&mut self, name: &str) -> Value {
        match name {
            "event" => self.event_string(),
            "_metadata" => self.metadata_value(),
            "_env" => self.bot.env.clone(),
            _ => self.memory_value(),
        }
    }

    /// Record a memory and its write for the engine (spec §3.3), within the turn's memory
    /// quota.
    pub fn write_memory(&mut self, name: &str, value: Value, pos: Pos) -> R<()> {
        let json = crate::json::to_memory(&value);
        self.charge_memory(name.len() as u64 + super::budget::json_len(&json), pos)?;
        self.memory_writes.push(MemoryWrite {
            key: name.to_string(),
            value: json,
        });
        self.memories.insert(name.to_string(), value);
        Ok(())
    }

    /// Persist memory `name` after an in-place change, within the turn's memory quota.
    pub fn persist_memory(&mut self, name: &str, pos: Pos) -> R<()> {
        if let Some(v) = self.memories.get(name) {
            let value: Json = crate::json::to_memory(v);
            self.charge_memory(name.len() as u64 + super::budget::json_len(&value), pos)?;
            self.memory_writes.push(MemoryWrite {
                key: name.to_string(),
                value,
            });
        }
        Ok(())
    }

    /// `do name = value` / `expr as name`: constant → error; local; memory; else a new local.
    pub fn bind(&mut self, name: &str, value: Value, pos: Pos) -> R<()> {
        if value.contains_secure() {
            self.error(super::scope::ERR_SECURE_ASSIGN, pos);
            return Ok(());
        }
        match self.slot(name) {
            Some(Slot::Const) => {
                self.error("const variables are immutable", pos);
            }
            Some(Slot::Memory(_)) => self.write_memory(name, value, pos)?,
            _ => {
                if let Some(v) = self.frame.locals.get_mut(name) {
                    *v = value;
                } else {
                    self.frame.locals.insert(name.to_string(), value);
                }
            }
        }
        Ok(())
    }

    /// `do target[path] OP value` (spec §3.4), with the path already evaluated.
    pub fn assign(
        &mut self,
        name: &str,
        name_pos: Pos,
        path: Vec<Access>,
        op: AssignOp,
        value: Value,
        value_pos: Pos,
    ) -> R<()> {
        if value.contains_secure() {
            self.error(ERR_SECURE_ASSIGN, value_pos);
            return Ok(());
        }
        if path.is_empty() && op == AssignOp::Set {
            // `do name = value`, the common case: no path to walk, nothing to combine.
            match self.slot(name) {
                Some(Slot::Const) => {
                    self.error("const variables are immutable", name_pos);
                }
                Some(Slot::Local(i)) => {
                    if let Some((_, cell)) = self.frame.locals.get_index_mut(i) {
                        *cell = value;
                    }
                }
                Some(Slot::Memory(_)) => self.write_memory(name, value, name_pos)?,
                None => {
                    self.frame.locals.insert(name.to_string(), value);
                }
            }
            return Ok(());
        }
        let slot = match self.slot(name) {
            Some(Slot::Const) => {
                self.error("const variables are immutable", name_pos);
                return Ok(());
            }
            Some(s) => s,
            None => {
                let (i, _) = self
                    .frame
                    .locals
                    .insert_full(name.to_string(), Value::null());
                Slot::Local(i)
            }
        };
        // Work on the variable taken out of its slot, so errors can be emitted while it is
        // held; it is always put back (nothing here changes the scope meanwhile).
        let Some(cell) = self.var_mut(slot) else {
            return Ok(());
        };
        let mut root = std::mem::take(cell);
        let outcome = self.assign_into(&mut root, &path, op, value, name_pos);
        if let Some(cell) = self.var_mut(slot) {
            *cell = root;
        }
        let changed = outcome?;
        if changed && matches!(slot, Slot::Memory(_)) {
            self.persist_memory(name, name_pos)?;
        }
        Ok(())
    }

    /// Apply an assignment inside `root`. `Ok(true)` when something changed.
    fn assign_into(
        &mut self,
        root: &mut Value,
        path: &[Access],
        op: AssignOp,
        value: Value,
        pos: Pos,
    ) -> R<bool> {
        let Some((last, init)) = path.split_last() else {
            return self.combine_into(root, op, value, pos);
        };
        let mut cur: &mut Value = root;
        for acc in init {
            let next = match (acc, &mut cur.kind) {
                (Access::Key(k, _), Kind::Object(m)) => m.get_mut(k.as_str()),
                (Access::Index(i, _), Kind::Object(m)) => match &i.kind {
                    Kind::String(k) => m.get_mut(k.as_str()),
                    _ => None,
                },
                (Access::Index(i, _), Kind::Array(a)) => match i.kind {
                    Kind::Int(n) if n >= 0 && (n as usize) < a.len() => a.get_mut(n as usize),
                    Kind::Int(n) => {
                        self.error(&index_reason(n), acc.pos());
                        return Ok(false);
                    }
                    _ => None,
                },
                _ => None,
            };
            match next {
                Some(n) => cur = n,
                None => {
                    let k = access_text(acc);
                    self.error(&key_reason(&k), acc.pos());
                    return Ok(false);
                }
            }
        }
        match (last, &mut cur.kind) {
            (Access::Key(k, _), Kind::Object(m)) => {
                let slot = m.entry(k.clone()).or_insert_with(Value::null);
                self.combine_into(slot, op, value, pos)
            }
            (Access::Index(i, ipos), Kind::Object(m)) => match &i.kind {
                Kind::String(k) => {
                    let slot = m.entry(k.clone()).or_insert_with(Value::null);
                    self.combine_into(slot, op, value, pos)
                }
                _ => {
                    self.error(&key_reason(&crate::json::to_display(i)), *ipos);
                    Ok(false)
                }
            },
            (Access::Index(i, ipos), Kind::Array(a)) => match i.kind {
                Kind::Int(n) if n >= 0 && (n as usize) < a.len() => {
                    self.combine_into(&mut a[n as usize], op, value, pos)
                }
                Kind::Int(n) => {
                    self.error(&index_reason(n), *ipos);
                    Ok(false)
                }
                _ => {
                    self.error(&key_reason(&crate::json::to_display(i)), *ipos);
                    Ok(false)
                }
            },
            (Access::Index(i, ipos), Kind::String(s)) => match i.kind {
                Kind::Int(n) if n >= 0 && (n as usize) < s.chars().count() => {
                    let mut old = Value::string(s.chars().nth(n as usize).unwrap_or(' '));
                    if !self.combine_into(&mut old, op, value, pos)? {
                        return Ok(false);
                    }
                    let rep = crate::json::to_display(&old);
                    let n = n as usize;
                    *s = s
                        .chars()
                        .enumerate()
                        .map(|(j, c)| if j == n { rep.clone() } else { c.to_string() })
                        .collect();
                    Ok(true)
                }
                Kind::Int(n) => {
                    self.error(&index_reason(n), *ipos);
                    Ok(false)
                }
                _ => {
                    self.error(&key_reason(&crate::json::to_display(i)), *ipos);
                    Ok(false)
                }
            },
            (Access::Key(..), _) | (Access::Index(..), _) => {
                // Inserting a key into something that is not an Object is fatal (spec §3.4).
                Err(self.fatal(
                    &format!("[insert] is not a method of {}", cur.type_name()),
                    pos,
                ))
            }
        }
    }

    /// `slot OP= value`. A failing compound operation is reported and leaves `slot` as it was
    /// (spec §3.4 Decision).
    fn combine_into(&mut self, slot: &mut Value, op: AssignOp, value: Value, pos: Pos) -> R<bool> {
        let bin = match op {
            AssignOp::Set => {
                *slot = value;
                return Ok(true);
            }
            AssignOp::Add => BinOp::Add,
            AssignOp::Sub => BinOp::Sub,
            AssignOp::Mul => BinOp::Mul,
            AssignOp::Div => BinOp::Div,
            AssignOp::Rem => BinOp::Rem,
        };
        match crate::ops::binary(bin, slot, &value) {
            Ok(v) => {
                *slot = v;
                Ok(true)
            }
            Err(reason) => {
                self.error(&reason, pos);
                Ok(false)
            }
        }
    }
}

/// The text of a path step for error messages (`[k] key does not exist`).
pub(crate) fn access_text(a: &Access) -> String {
    match a {
        Access::Key(k, _) => k.clone(),
        Access::Index(v, _) => crate::json::to_display(v),
    }
}
