//! Liveness, judged once faults are healed: within the bound,
//! - every host's send streams drain (everything accepted became stable);
//! - every member still in its group at the end was delivered every
//!   message it sent itself in its current membership;
//! - and every message anyone delivered at a position at or after the start
//!   of that member's first view (the sequencer's first position in that
//!   view), so all members of the final view end with the same sequence.
//!
//! Messages of apps that disconnected need not arrive (their host may
//! still deliver them; integrity and order are checked all the same).

use super::{msg_id, Checks, MemberKey};
use crate::app::{App, MState};
use crate::node::Node;
use std::collections::BTreeMap;

/// Where each (group, view) begins, as its sequencer assigned it.
pub type ViewStarts = BTreeMap<(u16, u64, u64), u64>;

/// True when every host's sends are stable.
pub fn drained(nodes: &[Node]) -> bool {
    nodes
        .iter()
        .filter(|n| n.alive)
        .all(|n| n.host.is_drained())
}

/// What is still missing, if anything (a few examples).
pub fn missing(
    checks: &Checks,
    apps: &[App],
    nodes: &[Node],
    starts: &ViewStarts,
) -> Result<(), String> {
    let mut out = Vec::new();
    for n in nodes.iter().filter(|n| n.alive && !n.host.is_drained()) {
        let lines: Vec<String> = n
            .host
            .groups()
            .filter(|g| !g.sends_drained())
            .map(|g| g.debug_line())
            .collect();
        out.push(format!(
            "h{} still holds unstable sends: {}",
            n.idx,
            lines.join("; ")
        ));
    }
    for a in apps
        .iter()
        .filter(|a| !a.disconnected && nodes[a.node].alive)
    {
        for (i, m) in a.groups.iter().enumerate() {
            if m.state != MState::Member {
                continue;
            }
            let key = a.key(i);
            own_messages(checks, a, i, key, &mut out);
            everyone_elses(checks, key, starts, &mut out);
        }
    }
    if out.is_empty() {
        return Ok(());
    }
    let n = out.len();
    out.truncate(6);
    Err(format!("{n} problems, e.g.: {}", out.join(" | ")))
}

fn own_messages(checks: &Checks, a: &App, i: usize, key: MemberKey, out: &mut Vec<String>) {
    let m = &a.groups[i];
    for c in m.stint_first_counter..m.next_counter() {
        let id = msg_id(a.id, m.group, c);
        if checks.integrity.is_accepted(id) && !checks.integrity.was_delivered(key, id) {
            out.push(format!(
                "{key} never got its own message #{c} (position {:?})",
                checks.total_order.position(id)
            ));
            return;
        }
    }
}

fn everyone_elses(checks: &Checks, key: MemberKey, starts: &ViewStarts, out: &mut Vec<String>) {
    let first_view = checks.vs.first_view_of(key);
    let mut e = checks.epoch_of(key.group, first_view.unwrap_or(0));
    let mut start = first_view
        .and_then(|v| starts.get(&(key.group, e, v)).copied())
        .or_else(|| checks.total_order.first_of(key));
    // The group's order started over while it was a member (every node
    // that held the old one left): it owes the new order from its start.
    if let Some(now) = checks.vs.view_of(key) {
        let e_now = checks.epoch_of(key.group, now);
        if e_now != e {
            e = e_now;
            let start_view = e_now & 0xffff_ffff;
            start = starts.get(&(key.group, e, start_view)).copied();
        }
    }
    let Some(start) = start else { return };
    for (p, id) in checks.total_order.positions_from(key.group, e, start) {
        if !checks.integrity.was_delivered(key, id) {
            out.push(format!(
                "{key} (first view {first_view:?}, starting at {start}) never got position {p} ({id:#x})"
            ));
            return;
        }
    }
}
