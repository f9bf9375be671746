//! Groups rebuilt from what the daemons report: Resume frames and the
//! grace period after the directory starts.
//!
//! The directory holds soft state only. After it restarts, every daemon
//! registers again asking for its previous node id and then reports each
//! group it takes part in with a Resume: the group's id, name and address,
//! the view it has installed, the sequencer it knows and its own members.
//!
//! A group reported within the grace period (one lease from the first input
//! the directory saw) is *recovering*: reports add their nodes and members
//! and raise its view counter to the highest view reported, and nothing is
//! published. When the grace period ends the group gets one view, numbered
//! one above the highest view reported, with every node that reported it,
//! the union of their members and, if its node reported, the sequencer
//! reported with the highest view (so that the order goes on without a
//! flush). Members are ordered by node and member id (the old join order
//! is lost with the old directory). Joins that arrive for a group without a view while the directory
//! is evidently restarting are held until then, so that no view of a group
//! is handed out before the nodes that ran it have reported it; held joins
//! for a recovering group become part of its first view.
//!
//! Outside recovery a Resume reconciles: a node that takes part in the
//! group has its members set to the reported ones (the daemon may have lost
//! Leave frames while its link was down); a node that does not is attached
//! with its members, in a new view numbered above both the group's counter
//! and the reported view.

use super::groups::{Group, Groups, Recovery};
use super::registry::ConnState;
use super::{ConnId, Directory, FromDirectory, NodeInfo, MEMBERS_PER_GROUP_MAX};
use crate::ids::{GroupId, MemberId, NodeId, ViewId};
use crate::time::Instant;
use crate::wire::directory::{MemberInfo, Resume, ToDirectory, View};
use std::collections::{BTreeMap, BTreeSet};

/// Most joins held during the grace period; more are refused.
pub const HELD_JOINS_MAX: usize = 16 * MEMBERS_PER_GROUP_MAX;

/// A join as a daemon asked for it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct PendingJoin {
    pub node: NodeId,
    pub group: String,
    pub member: MemberId,
    pub member_name: String,
    pub user: String,
    pub unix_groups: Vec<String>,
}

/// How a node's report of a group was taken.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Resumed {
    /// Nothing changed: the node takes part and its members are as reported.
    Unchanged(GroupId),
    /// The group has a new view to publish.
    NewView(GroupId),
    /// Recorded into a recovering group; its view comes when recovery ends.
    Recorded(GroupId),
    /// The report conflicts with this directory's groups (the reason); the
    /// node must drop the group.
    Refused(String),
}

impl Group {
    /// Adds a node's report to a recovering group (starting the recovery).
    fn record(&mut self, node: NodeId, r: &Resume) {
        let rec = self.recovery.get_or_insert(Recovery {
            sequencer: r.sequencer,
            reported: BTreeMap::new(),
        });
        rec.reported.insert(node, r.view);
        if r.view > self.view {
            self.view = r.view;
            rec.sequencer = r.sequencer;
        }
        self.attach(node);
        // A resuming node is as old as its part in the group's order (its
        // report order is chance); every node that joins meanwhile is
        // younger: it has no history of the order and could not take it
        // over from the others if the sequencer is gone.
        self.attached_since(node, r.since);
        self.set_node_members(node, &r.members);
        // The old join order is lost with the old directory; an order that
        // does not depend on who reported first keeps the first view (and
        // its sequencer, when the reported one is gone) deterministic.
        self.members.sort_by_key(|m| (m.node, m.member));
    }

    /// Ends the recovery with the group's first view: one above the highest
    /// view reported (plus `margin`, see [`Directory::with_view_margin`]),
    /// with the reported sequencer if its node resumed the group and is
    /// still attached.
    fn end_recovery(&mut self, margin: u64) {
        if let Some(rec) = self.recovery.take() {
            self.view = ViewId(self.view.0.saturating_add(margin));
            // Kept only if its node still takes part as it reported (sim
            // seed 51612: the sequencer detached during the recovery and
            // attached again with no history of the order).
            self.sequencer = rec
                .reported
                .contains_key(&rec.sequencer)
                .then_some(rec.sequencer);
            self.next_view();
        }
    }

    /// Makes the node's members exactly the reported ones (at most
    /// [`MEMBERS_PER_GROUP_MAX`] in the group; a reported name the node
    /// already has under another id is skipped). True if anything changed.
    fn set_node_members(&mut self, node: NodeId, reported: &[(MemberId, String)]) -> bool {
        let reported = &reported[..reported.len().min(MEMBERS_PER_GROUP_MAX)];
        let ids: BTreeSet<MemberId> = reported.iter().map(|(id, _)| *id).collect();
        let before = self.members.len();
        self.members
            .retain(|m| m.node != node || ids.contains(&m.member));
        let mut changed = self.members.len() != before;
        for (id, name) in reported {
            let present = self
                .members
                .iter()
                .any(|m| m.node == node && (m.member == *id || m.name == *name));
            if present {
                continue;
            }
            if self.members.len() >= MEMBERS_PER_GROUP_MAX {
                log::warn!(
                    "group `{}`: resumed members cut at {MEMBERS_PER_GROUP_MAX}",
                    self.name
                );
                break;
            }
            self.members.push(MemberInfo {
                node,
                member: *id,
                name: name.clone(),
            });
            changed = true;
        }
        changed
    }

    /// Checks that a report places the group where this directory does.
    fn same_place(&self, r: &Resume) -> Result<(), String> {
        if (self.address, self.port) == (r.address, r.port) {
            return Ok(());
        }
        Err(format!(
            "group `{}` is on {}:{} here, not {}:{}",
            self.name, self.address, self.port, r.address, r.port
        ))
    }
}

impl Groups {
    /// Takes a node's report of a group. `grace`: the directory is within
    /// its grace period, so a group without a view starts recovering rather
    /// than getting a view at once. `margin`: see `Directory::with_view_margin`.
    pub(super) fn resume(&mut self, node: NodeId, r: &Resume, grace: bool, margin: u64) -> Resumed {
        self.last_group = self.last_group.max(r.group.0);
        let id = match self.place(r) {
            Ok(id) => id,
            Err(reason) => return Resumed::Refused(reason),
        };
        let Some(g) = self.groups.get_mut(&id) else {
            return Resumed::Refused("no such group".into());
        };
        if g.is_recovering() {
            g.record(node, r);
            return Resumed::Recorded(id);
        }
        if g.is_idle() {
            g.record(node, r);
            if grace {
                return Resumed::Recorded(id);
            }
            g.end_recovery(margin);
            return Resumed::NewView(id);
        }
        g.view = g.view.max(r.view);
        let attached = !g.attach(node);
        let changed = g.set_node_members(node, &r.members);
        if attached && !changed {
            return Resumed::Unchanged(id);
        }
        g.next_view();
        Resumed::NewView(id)
    }

    /// Finds the group a report names, making room for it: a group that
    /// never had a view, holding the reported id under another name, moves
    /// to a fresh id; an idle group of the reported name takes the reported
    /// id; a group nobody declared is created again. Errors when the id
    /// belonged to a group that ended, another group that daemons know is in
    /// the way, or the group cannot be created.
    fn place(&mut self, r: &Resume) -> Result<GroupId, String> {
        if self.is_retired(r.group) {
            return Err(format!(
                "group id {} belonged to a group that ended",
                r.group
            ));
        }
        if let Some(g) = self.groups.get(&r.group) {
            if g.name == r.group_name {
                g.same_place(r)?;
                return Ok(r.group);
            }
            if !g.is_idle() || g.view.0 > 0 {
                return Err(format!(
                    "group id {} belongs to group `{}`",
                    r.group, g.name
                ));
            }
            let fresh = self
                .next_id()
                .ok_or_else(|| String::from("group ids exhausted"))?;
            self.rekey(r.group, fresh);
        }
        if let Some(&other) = self.by_name.get(&r.group_name) {
            let g = self
                .groups
                .get(&other)
                .ok_or_else(|| String::from("no such group"))?;
            if !g.is_idle() {
                return Err(format!("group `{}` runs as group {other}", g.name));
            }
            g.same_place(r)?;
            self.rekey(other, r.group);
            return Ok(r.group);
        }
        self.recreate(r)
    }

    /// Creates again a dynamic group a node reports (it keeps its id and
    /// its pool address, which is then in use).
    fn recreate(&mut self, r: &Resume) -> Result<GroupId, String> {
        let Some(dynamic) = &self.dynamic else {
            return Err(format!(
                "no group `{}` (dynamic groups are off)",
                r.group_name
            ));
        };
        if r.group_name.is_empty() {
            return Err("empty group name".into());
        }
        if dynamic.port != r.port || !dynamic.addresses.contains(&r.address) {
            return Err(format!(
                "{}:{} is not in the dynamic pool",
                r.address, r.port
            ));
        }
        if let Some(g) = self.groups.values().find(|g| g.address == r.address) {
            return Err(format!("{} is used by group `{}`", r.address, g.name));
        }
        log::info!(
            "group `{}` ({}) created again on {}:{}",
            r.group_name,
            r.group,
            r.address,
            r.port
        );
        self.insert(Group::new(r.group, r.group_name.clone(), r.address, r.port));
        Ok(r.group)
    }

    /// Moves a group to another id (the new id must be free).
    fn rekey(&mut self, from: GroupId, to: GroupId) {
        if let Some(mut g) = self.remove(from) {
            log::info!("group `{}` moves from id {from} to id {to}", g.name);
            g.id = to;
            self.insert(g);
        }
    }

    /// Ends a group's recovery with its first view. True if it has one
    /// (some node is still attached).
    pub(super) fn end_recovery(&mut self, id: GroupId, margin: u64) -> bool {
        let Some(g) = self.groups.get_mut(&id) else {
            return false;
        };
        g.end_recovery(margin);
        let has_view = g.has_view();
        self.collect(id);
        has_view
    }

    /// Removes the node and its members from one group. True if it took
    /// part (the group then has a new view, or none).
    /// Takes a node's report out of a recovering group (its members and
    /// its part in the recovered view), without a view of its own.
    pub(super) fn forget_report(&mut self, node: NodeId, id: GroupId) {
        if let Some(g) = self.groups.get_mut(&id) {
            g.members.retain(|m| m.node != node);
            g.unattach(node);
        }
        self.collect(id);
    }

    pub(super) fn drop_node_from(&mut self, node: NodeId, id: GroupId) -> bool {
        let Some(g) = self.groups.get_mut(&id) else {
            return false;
        };
        g.members.retain(|m| m.node != node);
        if !g.unattach(node) {
            return false;
        }
        g.next_view();
        self.collect(id);
        true
    }
}

impl Directory {
    /// Notes the time of an input. The first input starts the grace period
    /// (it lasts one lease); an input at or after its end ends it first.
    pub(super) fn note_time(&mut self, now: Instant) {
        let end = *self.grace_end.get_or_insert(now + self.lease);
        if !self.grace_over && now >= end {
            self.end_grace(now);
        }
    }

    /// Whether `now` is within the grace period.
    pub(super) fn in_grace(&self, now: Instant) -> bool {
        !self.grace_over && self.grace_end.is_some_and(|end| now < end)
    }

    /// The end of the grace period, while something waits for it.
    pub(super) fn grace_deadline(&self) -> Option<Instant> {
        let waiting =
            !self.held.is_empty() || !self.held_hellos.is_empty() || self.groups.any_recovering();
        self.grace_end.filter(|_| waiting && !self.grace_over)
    }

    /// Whether a join to `group` must wait for the grace period to end:
    /// the group is recovering, or it has no view and nodes are resuming
    /// (a view now could precede the reports of the nodes that ran it).
    pub(super) fn must_hold(&self, now: Instant, group: &str) -> bool {
        if !self.in_grace(now) {
            return false;
        }
        match self.groups.by_name(group) {
            Some(g) if g.is_recovering() => true,
            Some(g) if g.has_view() => false,
            _ => self.restart_seen,
        }
    }

    /// Holds a join until the grace period ends (or refuses it when too
    /// many wait).
    pub(super) fn hold(&mut self, join: PendingJoin) {
        if self.held.len() >= HELD_JOINS_MAX {
            let reason = "the directory is recovering its groups; try again".to_owned();
            return self.refuse_join(&join, reason);
        }
        log::debug!(
            "node {}: join of `{}` to `{}` held until the groups are recovered",
            join.node,
            join.member_name,
            join.group
        );
        self.held.push(join);
    }

    /// A view of `group` after `latest` that went on without `node`, among
    /// those of the previous directory that nodes told of (`past_view`):
    /// the group left the node behind (the old directory declared it dead,
    /// then restarted before it came back), so the node's state of the
    /// group is stale and it must not resume it as if it had stayed. (A
    /// view of this directory's own without the node is no such sign: a
    /// node that reported late is simply not in the recovered view.)
    fn excluded_after(&self, group: GroupId, node: NodeId, latest: ViewId) -> Option<ViewId> {
        self.told_views
            .get(&group)?
            .iter()
            .find(|v| v.view > latest && !v.nodes.iter().any(|n| n.node == node))
            .map(|v| v.view)
    }

    /// A node reports a group it takes part in.
    pub(super) fn resume(&mut self, now: Instant, node: NodeId, r: Resume) {
        self.registry.reserve(r.sequencer);

        let excluded = self.excluded_after(r.group, node, r.view).filter(|_| {
            self.groups
                .get(r.group)
                .is_some_and(|g| g.name == r.group_name)
        });
        let resumed = match excluded {
            Some(v) => Resumed::Refused(format!(
                "view {v} of the group went on without it (it reports view {}): it was declared dead",
                r.view
            )),
            None => self
                .groups
                .resume(node, &r, self.in_grace(now), self.view_margin),
        };
        match resumed {
            Resumed::Unchanged(id) => log::debug!("node {node} resumed group {id}: no change"),
            Resumed::Recorded(id) => log::info!(
                "group `{}` ({id}) recovering: node {node} reports view {} with {} members",
                r.group_name,
                r.view,
                r.members.len()
            ),
            Resumed::NewView(id) => {
                log::info!("node {node} resumed group `{}` ({id})", r.group_name);
                self.publish(id);
            }
            Resumed::Refused(reason) => {
                log::warn!(
                    "node {node} cannot resume group `{}` ({}): {reason}; it must drop it",
                    r.group_name,
                    r.group
                );
                if self.groups.drop_node_from(node, r.group) {
                    self.publish(r.group);
                }
                if let Some(conn) = self.registry.conn_of(node) {
                    let ended = FromDirectory::GroupEnded { group: r.group };
                    self.output.push_back((conn, ended));
                }
            }
        }
    }

    /// A node that resumed a recovering group tells a view of it that it
    /// remembers (the old directory published it). Kept with the group's
    /// recent views, it goes to every node of that view before the group's
    /// first view: a node whose link was down when the view was published
    /// would reach its marker in the order without knowing it. Ignored
    /// outside the group's recovery: this directory's own views are the
    /// ones it hands out then, and their numbers may collide with the old.
    pub(super) fn past_view(&mut self, node: NodeId, v: View) {
        let known = self.groups.get(v.group).is_some_and(|g| {
            g.is_recovering()
                && g.attached.contains(&node)
                && g.name == v.group_name
                && v.view <= g.view
        });
        if !known || !v.nodes.iter().any(|n| n.node == node) {
            log::debug!(
                "node {node}: past view {} of group {} not taken (the group is not recovering here, or the view is not the node's)",
                v.view,
                v.group
            );
            return;
        }
        for views in [&mut self.recent_views, &mut self.told_views] {
            let recent = views.entry(v.group).or_default();
            let Err(at) = recent.binary_search_by_key(&v.view, |r| r.view) else {
                continue;
            };
            recent.insert(at, v.clone());
            if recent.len() > super::RECENT_VIEWS_MAX {
                recent.pop_front();
            }
        }
    }

    /// Holds a Hello that asks for no id until the grace period ends (see
    /// the module doc of `directory`). The connection no longer owes a Hello.
    pub(super) fn hold_hello(&mut self, conn: ConnId, info: NodeInfo) {
        // A daemon that reconnected while waiting: its older link is dead.
        if let Some(i) = self
            .held_hellos
            .iter()
            .position(|(_, n)| n.name == info.name)
        {
            let (old, _) = self.held_hellos.remove(i);
            if old != conn {
                self.close(old);
            }
        }
        self.registry.hello_received(conn);
        log::info!(
            "node `{}` ({conn}) will be registered when the grace period ends (nodes that ran groups before a restart claim their ids first)",
            info.name
        );
        self.held_hellos.push((conn, info));
    }

    /// A frame on a link whose Hello waits. A daemon registered before may
    /// heartbeat on its new link before it is answered, and the group list
    /// is public; a Goodbye withdraws the Hello; anything else needs a node
    /// id and breaks the protocol.
    pub(super) fn while_hello_held(&mut self, conn: ConnId, frame: ToDirectory) {
        match frame {
            ToDirectory::Heartbeat => {}
            ToDirectory::ListGroups { request } => self.list_groups(conn, request),
            ToDirectory::Goodbye => {
                log::info!("{conn}: Goodbye before registration; closing");
                self.held_hellos.retain(|(c, _)| *c != conn);
                self.close(conn);
            }
            other => {
                log::warn!(
                    "{conn}: {} while its Hello waits; closing",
                    super::kind_name(&other)
                );
                self.held_hellos.retain(|(c, _)| *c != conn);
                self.close(conn);
            }
        }
    }

    /// Whether `conn`'s Hello waits for the end of the grace period.
    pub(super) fn is_held_hello(&self, conn: ConnId) -> bool {
        self.held_hellos.iter().any(|(c, _)| *c == conn)
    }

    /// The grace period is over: held Hellos are registered (under fresh
    /// ids, above those claimed back), held joins to recovering groups join
    /// them, every recovering group gets its first view, then the other
    /// held joins are taken as usual.
    fn end_grace(&mut self, now: Instant) {
        self.grace_over = true;
        for (conn, info) in std::mem::take(&mut self.held_hellos) {
            if self.registry.conn_state(conn) == Some(ConnState::AwaitingHello) {
                self.register(now, conn, info, None);
            }
        }
        let held = std::mem::take(&mut self.held);
        let (into_recovering, rest): (Vec<_>, Vec<_>) = held.into_iter().partition(|j| {
            self.groups
                .by_name(&j.group)
                .is_some_and(Group::is_recovering)
        });
        for join in &into_recovering {
            self.join_now(join);
        }
        for id in self.groups.recovering() {
            let mut reported = self
                .groups
                .get(id)
                .and_then(|g| g.recovery.as_ref())
                .map(|r| r.reported.clone())
                .unwrap_or_default();
            // A node left behind by a view another node told of (it came
            // back after the old directory had declared it dead) drops the
            // group and joins again: its state of the order is stale.
            let behind: Vec<(NodeId, ViewId)> = reported
                .iter()
                .filter_map(|(n, latest)| Some((*n, self.excluded_after(id, *n, *latest)?)))
                .collect();
            for (node, v) in behind {
                log::warn!(
                    "group {id}: node {node} reported view {} but view {v} went on without it; it must drop the group",
                    reported.get(&node).map_or(0, |v| v.0)
                );
                reported.remove(&node);
                self.groups.forget_report(node, id);
                if let Some(conn) = self.registry.conn_of(node) {
                    self.output
                        .push_back((conn, FromDirectory::GroupEnded { group: id }));
                }
            }
            if self.groups.get(id).is_none_or(|g| !g.is_recovering()) {
                continue;
            }
            if self.groups.end_recovery(id, self.view_margin) {
                if let Some(v) = self.current_view(id) {
                    log::info!(
                        "group `{}` ({id}) recovered: view {}, {} members on {} nodes, sequencer {}",
                        v.group_name,
                        v.view,
                        v.members.len(),
                        v.nodes.len(),
                        v.sequencer
                    );
                }
                self.send_past_views(id, &reported);
                self.publish(id);
            }
        }
        for join in &rest {
            self.join_now(join);
        }
    }
}
