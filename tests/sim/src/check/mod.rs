//! The checkers: one property per file, fed every app-visible event as it
//! happens (deliveries, views, send results) and, for the properties about
//! internal state, run after every step of the world.
//!
//! Each checker keeps only what it needs to decide its property
//! incrementally, so that running all of them after every step stays cheap.

pub mod bounded_memory;
pub mod fifo;
pub mod integrity;
pub mod liveness;
pub mod retransmissions;
pub mod sealing;
pub mod stability;
pub mod total_order;
pub mod virtual_synchrony;

use crate::world::Micros;
use chorus_proto::wire::directory::View;
use std::collections::{BTreeMap, BTreeSet};

/// One membership of one app in one group: an app that leaves and joins
/// again starts a new stint.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct MemberKey {
    pub app: u32,
    pub group: u16,
    pub stint: u32,
}

impl std::fmt::Display for MemberKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "a{}@g{}#{}", self.app, self.group, self.stint)
    }
}

/// A message's identity: sending app, group, and the app's counter in
/// that group (from 1, one per send it attempted).
pub fn msg_id(app: usize, group: usize, counter: u32) -> u64 {
    ((app as u64) << 40) | ((group as u64 & 0xff) << 32) | u64::from(counter)
}

/// The group a message id belongs to.
pub fn id_group(id: u64) -> u16 {
    ((id >> 32) & 0xff) as u16
}

/// The (app, group) stream a message id belongs to.
pub fn id_stream(id: u64) -> u64 {
    id >> 32
}

/// A payload of `len` bytes (at least 8): the id, then a pattern derived
/// from it, so that any corruption or mix-up is seen.
pub fn payload(id: u64, len: usize) -> Vec<u8> {
    let mut p = id.to_be_bytes().to_vec();
    p.extend((8..len.max(8)).map(|i| pattern_byte(id, i)));
    p
}

fn pattern_byte(id: u64, i: usize) -> u8 {
    (id as u8).wrapping_mul(31).wrapping_add(i as u8)
}

/// The id a payload carries, if it is one of ours.
pub fn payload_id(p: &[u8]) -> Option<u64> {
    let head: [u8; 8] = p.get(..8)?.try_into().ok()?;
    Some(u64::from_be_bytes(head))
}

/// True if the payload's pattern matches its id.
pub fn payload_intact(id: u64, p: &[u8]) -> bool {
    p.iter()
        .enumerate()
        .skip(8)
        .all(|(i, b)| *b == pattern_byte(id, i))
}

/// A property that failed.
#[derive(Debug, Clone)]
pub struct Violation {
    /// The checker (the file name under check/).
    pub check: &'static str,
    pub at: Micros,
    pub detail: String,
}

impl std::fmt::Display for Violation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "[{}] at {}.{:06}s: {}",
            self.check,
            self.at / 1_000_000,
            self.at % 1_000_000,
            self.detail
        )
    }
}

/// Every checker fed by app-visible events.
#[derive(Debug, Default)]
pub struct Checks {
    pub now: Micros,
    pub integrity: integrity::Integrity,
    pub total_order: total_order::TotalOrder,
    pub fifo: fifo::Fifo,
    pub vs: virtual_synchrony::VirtualSynchrony,
    pub violations: Vec<Violation>,
    /// View ids are reused only when a restarted directory that no node told
    /// of a group numbers its views from 1 again: each such numbering is a
    /// life of the group, and this names the life each issued view belongs to.
    lives: Lives,
    /// Per (group, life), the views where the group's order started at
    /// position 1 (once every node had left a declared group).
    order_starts: BTreeMap<(u16, u64), BTreeSet<u64>>,
}

/// Which life of its group each issued view id belongs to.
#[derive(Debug, Default)]
struct Lives {
    /// (group, view) to life.
    of: BTreeMap<(u16, u64), u64>,
    /// Each group's view 1 in its current life, as first issued.
    first: BTreeMap<u16, View>,
    /// Per group: its current life and the directory generation that
    /// began it.
    latest: BTreeMap<u16, (u64, u64)>,
}

impl Checks {
    fn record(&mut self, check: &'static str, r: Result<(), String>) {
        if let Err(detail) = r {
            self.violations.push(Violation {
                check,
                at: self.now,
                detail,
            });
        }
    }

    /// An app is about to hand the host a message.
    pub fn on_send(&mut self, id: u64, len: usize) {
        self.integrity.on_send(id, len);
    }

    /// The host accepted (Ok) or refused (Error) a message.
    pub fn on_send_result(&mut self, id: u64, ok: bool) {
        self.integrity.on_send_result(id, ok);
        if !ok {
            self.fifo.on_refused(id);
        }
    }

    /// The directory of generation `gen` (one per directory process life)
    /// issued view `view` of `group`. A group's views start at 1; a
    /// directory that rebuilt it from its nodes' reports goes on above what
    /// they knew, so a view 1 from a later generation begins a new life,
    /// unless it is the old view 1 handed on (nodes tell a recovering
    /// directory the views they remember, for those that missed one).
    pub fn on_view_issued(&mut self, gen: u64, group: u16, v: &View) {
        let view = v.view.0;
        let (life, since) = self.lives.latest.entry(group).or_insert((0, gen));
        if view == 1 && *since != gen && self.lives.first.get(&group) != Some(v) {
            *life += 1;
            *since = gen;
            self.lives.first.remove(&group);
        }
        if view == 1 {
            self.lives.first.entry(group).or_insert_with(|| v.clone());
        }
        let life = *life;
        self.lives.of.insert((group, view), life);
    }

    fn life_of(&self, group: u16, view: u64) -> u64 {
        self.lives.of.get(&(group, view)).copied().unwrap_or(0)
    }

    /// The group's order starts (again) at position 1 in `view`.
    pub fn on_order_start(&mut self, group: u16, view: u64) {
        let life = self.life_of(group, view);
        self.order_starts
            .entry((group, life))
            .or_default()
            .insert(view);
    }

    /// The order (life and start) a delivery in `view` of `group` belongs to.
    pub fn epoch_of(&self, group: u16, view: u64) -> u64 {
        let life = self.life_of(group, view);
        let start = self
            .order_starts
            .get(&(group, life))
            .and_then(|s| s.range(..=view).next_back().copied())
            .unwrap_or(0);
        (life << 32) | start
    }

    /// A member was told a view.
    pub fn on_view(&mut self, m: MemberKey, view: u64, members: &[String]) {
        let life = self.life_of(m.group, view);
        let r = self.vs.on_view(m, life, view, members);
        self.record("virtual_synchrony", r);
    }

    /// A member was delivered a message.
    pub fn on_deliver(&mut self, m: MemberKey, view: u64, seq: u64, p: &[u8], safe: bool) {
        let r = self.integrity.on_deliver(m, p);
        self.record("integrity", r);
        let Some(id) = payload_id(p) else { return };
        let e = self.epoch_of(m.group, view);
        let r = self.total_order.on_deliver(m, e, id, view, seq, safe);
        self.record("total_order", r);
        let r = self.fifo.on_deliver(m, id);
        self.record("fifo", r);
        let r = self.vs.on_deliver(m, id, view);
        self.record("virtual_synchrony", r);
    }

    /// The app sending `stream` was separated from its group with `next` as
    /// its next counter (what it sent before and had not made stable may
    /// be lost with its old membership).
    pub fn on_sender_separated(&mut self, stream: u64, next: u32) {
        self.fifo.on_sender_separated(stream, next);
    }

    /// The member's node is paused: it may come back separated.
    pub fn on_suspect(&mut self, m: MemberKey) {
        self.total_order.on_suspect(m);
    }

    /// The member was separated from its group (before `on_stint_end`):
    /// for that membership it is as if its host had crashed.
    pub fn on_separated(&mut self, m: MemberKey) {
        self.total_order.on_crash(m);
    }

    /// The member's host crashed (after `on_stint_end`).
    pub fn on_crash(&mut self, m: MemberKey) {
        self.total_order.on_crash(m);
    }

    /// A membership ended (leave answered, or the app disconnected).
    pub fn on_stint_end(&mut self, m: MemberKey) {
        self.vs.on_stint_end(m);
        self.total_order.on_stint_end(m);
    }

    /// Properties that can only be judged on the whole run.
    pub fn at_end(&mut self) {
        let r = self.total_order.at_end();
        self.record("total_order", r);
    }
}
