//! Groups: declared and dynamic, their members, attached nodes, view
//! counters and the choice of sequencer.
//!
//! A group has a current view while at least one node is attached to it and
//! it is not recovering. A node becomes attached when one of its members
//! joins (or when it resumes the group) and stays attached until it detaches
//! (after draining its sends) or dies, so that a node whose last member left
//! can still take part in the view change that follows.
//!
//! A group is recovering after a directory restart, while the nodes that
//! took part in it report it (see `resume.rs`): it collects nodes and
//! members but has no view, and view changes wait until the recovery ends
//! with one view.

use super::{DynamicDecl, GroupDecl, MEMBERS_PER_GROUP_MAX};
use crate::ids::{GroupId, MemberId, NodeId, ViewId};
use crate::wire::directory::{GroupSummary, MemberInfo};
use std::collections::{BTreeMap, BTreeSet};
use std::net::Ipv4Addr;

/// A join as the daemon asked for it, with the node that hosts the member.
#[derive(Debug, Clone)]
pub(super) struct JoinRequest<'a> {
    pub node: NodeId,
    /// The node's name, for the `NODE:NAME` display name.
    pub node_name: &'a str,
    pub group: &'a str,
    pub member: MemberId,
    pub member_name: &'a str,
    pub user: &'a str,
    pub unix_groups: &'a [String],
}

/// Why a Detach changed nothing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum DetachError {
    /// No such group, or the node is not attached to it.
    NotAttached,
    /// The node still hosts members of the group.
    HasMembers,
}

/// One group.
#[derive(Debug, Clone)]
pub(super) struct Group {
    pub id: GroupId,
    pub name: String,
    pub address: Ipv4Addr,
    pub port: u16,
    pub declared: bool,
    max_members: Option<u32>,
    /// Largest message payload (declared groups only); in every view.
    pub max_message_bytes: Option<u32>,
    allow_users: Option<Vec<String>>,
    allow_groups: Option<Vec<String>>,
    /// The last view id issued (0: none yet). Kept while the group exists.
    pub view: ViewId,
    /// Current members, in join order.
    pub members: Vec<MemberInfo>,
    /// Nodes taking part in the current view.
    pub attached: BTreeSet<NodeId>,
    /// When each attached node attached (a per-group counter): the node
    /// attached longest has the oldest order history.
    attached_at: BTreeMap<NodeId, u64>,
    attach_counter: u64,
    /// The sequencer of the current view.
    pub sequencer: Option<NodeId>,
    /// Set while the group is being rebuilt from the nodes' reports.
    pub recovery: Option<Recovery>,
}

/// What a recovering group learned from the nodes' reports.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Recovery {
    /// The sequencer reported with the highest view.
    pub sequencer: NodeId,
    /// The latest view each node that resumed the group reported.
    pub reported: BTreeMap<NodeId, ViewId>,
}

impl Group {
    pub(super) fn new(id: GroupId, name: String, address: Ipv4Addr, port: u16) -> Self {
        Group {
            id,
            name,
            address,
            port,
            declared: false,
            max_members: None,
            max_message_bytes: None,
            allow_users: None,
            allow_groups: None,
            view: ViewId(0),
            members: Vec::new(),
            attached: BTreeSet::new(),
            attached_at: BTreeMap::new(),
            attach_counter: 0,
            sequencer: None,
            recovery: None,
        }
    }

    fn declared(id: GroupId, decl: &GroupDecl) -> Self {
        let mut g = Group::new(id, decl.name.clone(), decl.address, decl.port);
        g.apply(decl);
        g
    }

    /// Takes the access rules and limits of `decl` (not its address).
    fn apply(&mut self, decl: &GroupDecl) {
        self.declared = true;
        self.max_members = decl.max_members;
        self.max_message_bytes = decl.max_message_bytes;
        self.allow_users = decl.allow_users.clone();
        self.allow_groups = decl.allow_groups.clone();
    }

    /// Whether the group has a current view.
    pub fn has_view(&self) -> bool {
        !self.attached.is_empty() && self.recovery.is_none()
    }

    /// Whether the group is being rebuilt from the nodes' reports.
    pub fn is_recovering(&self) -> bool {
        self.recovery.is_some()
    }

    /// No node takes part: no view, and no recovery either.
    pub fn is_idle(&self) -> bool {
        self.attached.is_empty() && self.recovery.is_none()
    }

    /// Checks ACL, limits and name uniqueness for a join; the reason if refused.
    fn admit(&self, req: &JoinRequest<'_>) -> Result<(), String> {
        if self.allow_users.is_some() || self.allow_groups.is_some() {
            let user_ok = self
                .allow_users
                .as_ref()
                .is_some_and(|u| u.iter().any(|a| a == req.user));
            let group_ok = self
                .allow_groups
                .as_ref()
                .is_some_and(|g| req.unix_groups.iter().any(|ug| g.contains(ug)));
            if !user_ok && !group_ok {
                return Err(format!(
                    "not allowed: user `{}` is not in allow_users and none of its groups is in allow_groups",
                    req.user
                ));
            }
        }
        let on_node = |m: &&MemberInfo| m.node == req.node;
        if self
            .members
            .iter()
            .filter(on_node)
            .any(|m| m.member == req.member)
        {
            return Err(format!("member id {} already joined", req.member));
        }
        if self
            .members
            .iter()
            .filter(on_node)
            .any(|m| m.name == req.member_name)
        {
            return Err(format!(
                "member name `{}:{}` is already in the group",
                req.node_name, req.member_name
            ));
        }
        if let Some(max) = self.max_members {
            if self.members.len() >= max as usize {
                return Err(format!("group full (max_members = {max})"));
            }
        }
        if self.members.len() >= MEMBERS_PER_GROUP_MAX {
            return Err(format!("group full ({MEMBERS_PER_GROUP_MAX} members)"));
        }
        Ok(())
    }

    /// Starts the next view after a change: the view counter goes up and the
    /// sequencer is chosen. Does nothing when no node is attached (the view
    /// is gone; nobody is told) or while the group recovers (its first view
    /// comes when the recovery ends).
    pub(super) fn next_view(&mut self) {
        if self.recovery.is_some() {
            return;
        }
        if self.attached.is_empty() {
            self.sequencer = None;
            return;
        }
        self.view = ViewId(self.view.0 + 1);
        self.sequencer = self.choose_sequencer();
    }

    /// Attaches a node; true if it was not attached.
    pub(super) fn attach(&mut self, node: NodeId) -> bool {
        let new = self.attached.insert(node);
        if new {
            self.attach_counter += 1;
            self.attached_at.insert(node, self.attach_counter);
        }
        new
    }

    /// Counts the node, attached, as having taken part since view `since`:
    /// a node resuming a recovering group (see `resume.rs`). Nodes that
    /// attach from now on count as younger.
    pub(super) fn attached_since(&mut self, node: NodeId, since: ViewId) {
        if self.attached.contains(&node) {
            self.attached_at.insert(node, since.0);
            self.attach_counter = self.attach_counter.max(since.0);
        }
    }

    /// Detaches a node; true if it was attached.
    pub(super) fn unattach(&mut self, node: NodeId) -> bool {
        self.attached_at.remove(&node);
        // A node that leaves a recovering group and attaches again (a held
        // join) has no part in the order it reported.
        if let Some(rec) = self.recovery.as_mut() {
            rec.reported.remove(&node);
        }
        self.attached.remove(&node)
    }

    /// The deterministic rule: keep the sequencer while its node stays
    /// attached (moving the order elsewhere costs a flush); otherwise the
    /// node attached longest (lowest id among equals): it has the oldest
    /// history of the order, so it can catch up to the flush's cut and
    /// repair every other survivor; a node that attached a moment ago may
    /// have none.
    fn choose_sequencer(&self) -> Option<NodeId> {
        if let Some(s) = self.sequencer.filter(|s| self.attached.contains(s)) {
            return Some(s);
        }
        self.attached
            .iter()
            .copied()
            .min_by_key(|n| (self.attached_at.get(n).copied().unwrap_or(0), *n))
    }

    /// Removes every member of `node` and detaches it. True if it was attached.
    fn drop_node(&mut self, node: NodeId) -> bool {
        self.members.retain(|m| m.node != node);
        self.unattach(node)
    }

    fn summary(&self) -> GroupSummary {
        GroupSummary {
            name: self.name.clone(),
            address: self.address,
            port: self.port,
            view: if self.has_view() {
                self.view
            } else {
                ViewId(0)
            },
            members: u32::try_from(self.members.len()).unwrap_or(u32::MAX),
            declared: self.declared,
        }
    }
}

/// A group that a reload ended, with the nodes that were attached to it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Ended {
    pub group: GroupId,
    pub name: String,
    pub nodes: Vec<NodeId>,
}

/// Every group the directory knows.
#[derive(Debug)]
pub(super) struct Groups {
    pub(super) groups: BTreeMap<GroupId, Group>,
    pub(super) by_name: BTreeMap<String, GroupId>,
    /// The highest group id handed out or seen in a daemon's report; fresh
    /// ids are above it, so ids are never reused.
    pub(super) last_group: u32,
    pub(super) dynamic: Option<DynamicDecl>,
    /// Ids that named a group with a view and no longer do (the most
    /// recent [`RETIRED_GROUPS_MAX`]): daemons may still know them, so no
    /// report may give them to a group again.
    retired: BTreeSet<GroupId>,
    /// Every id at or below this counts as retired (forgotten ones).
    retired_floor: u32,
}

/// Most retired group ids remembered (older ones fold into a floor).
const RETIRED_GROUPS_MAX: usize = 1 << 16;

impl Groups {
    /// Declared groups get ids from 1 in declaration order.
    pub(super) fn new(decls: &[GroupDecl], dynamic: Option<DynamicDecl>) -> Self {
        let mut groups = Groups {
            groups: BTreeMap::new(),
            by_name: BTreeMap::new(),
            last_group: 0,
            dynamic,
            retired: BTreeSet::new(),
            retired_floor: 0,
        };
        for decl in decls {
            if groups.by_name.contains_key(&decl.name) {
                log::warn!(
                    "group `{}` declared twice; the first one is used",
                    decl.name
                );
                continue;
            }
            if let Some(id) = groups.next_id() {
                groups.insert(Group::declared(id, decl));
            }
        }
        groups
    }

    pub(super) fn next_id(&mut self) -> Option<GroupId> {
        let next = self.last_group.checked_add(1)?;
        self.last_group = next;
        Some(GroupId(next))
    }

    pub(super) fn insert(&mut self, g: Group) {
        self.by_name.insert(g.name.clone(), g.id);
        self.groups.insert(g.id, g);
    }

    /// Takes a group out of the table. An id that some daemon may know
    /// (the group had a view) is retired.
    pub(super) fn remove(&mut self, id: GroupId) -> Option<Group> {
        let g = self.groups.remove(&id)?;
        self.by_name.remove(&g.name);
        if g.view.0 > 0 {
            self.retired.insert(id);
            while self.retired.len() > RETIRED_GROUPS_MAX {
                if let Some(oldest) = self.retired.pop_first() {
                    self.retired_floor = self.retired_floor.max(oldest.0);
                }
            }
        }
        Some(g)
    }

    /// Whether the id named a group that had a view and is gone.
    pub(super) fn is_retired(&self, id: GroupId) -> bool {
        id.0 <= self.retired_floor || self.retired.contains(&id)
    }

    /// The group with this id.
    pub(super) fn get(&self, id: GroupId) -> Option<&Group> {
        self.groups.get(&id)
    }

    /// The group with this name.
    pub(super) fn by_name(&self, name: &str) -> Option<&Group> {
        self.by_name.get(name).and_then(|id| self.groups.get(id))
    }

    /// The first pool address no group uses, in pool order.
    pub(super) fn free_address(&self) -> Option<(Ipv4Addr, u16)> {
        let dynamic = self.dynamic.as_ref()?;
        let used: BTreeSet<Ipv4Addr> = self.groups.values().map(|g| g.address).collect();
        dynamic
            .addresses
            .iter()
            .find(|a| !used.contains(a))
            .map(|a| (*a, dynamic.port))
    }

    /// Adds a member; creates the group first if it is not declared and
    /// dynamic groups are configured. On success the group has a new view.
    /// On refusal nothing changed and the reason is returned.
    pub(super) fn join(&mut self, req: &JoinRequest<'_>) -> Result<GroupId, String> {
        let id = match self.by_name.get(req.group) {
            Some(id) => *id,
            None => self.create_dynamic(req)?,
        };
        let Some(g) = self.groups.get_mut(&id) else {
            return Err("no such group".into());
        };
        g.admit(req)?;
        g.members.push(MemberInfo {
            node: req.node,
            member: req.member,
            name: req.member_name.to_owned(),
        });
        g.attach(req.node);
        g.next_view();
        Ok(id)
    }

    /// Creates a dynamic group for a join that names an unknown group.
    fn create_dynamic(&mut self, req: &JoinRequest<'_>) -> Result<GroupId, String> {
        if self.dynamic.is_none() {
            return Err("no such group".into());
        }
        if req.group.is_empty() {
            return Err("empty group name".into());
        }
        let (address, port) = self
            .free_address()
            .ok_or_else(|| String::from("no free address in the dynamic pool"))?;
        let id = self
            .next_id()
            .ok_or_else(|| String::from("group ids exhausted"))?;
        log::info!("group `{}` ({id}) created on {address}:{port}", req.group);
        self.insert(Group::new(id, req.group.to_owned(), address, port));
        Ok(id)
    }

    /// Removes a member of `node`. True if the group has a new view.
    pub(super) fn leave(&mut self, node: NodeId, id: GroupId, member: MemberId) -> bool {
        let Some(g) = self.groups.get_mut(&id) else {
            return false;
        };
        let before = g.members.len();
        g.members
            .retain(|m| !(m.node == node && m.member == member));
        if g.members.len() == before {
            return false;
        }
        g.next_view();
        true
    }

    /// Detaches a node that hosts no member of the group any more. On
    /// success the group has a new view, or none if it was the last node.
    pub(super) fn detach(&mut self, node: NodeId, id: GroupId) -> Result<(), DetachError> {
        let g = self
            .groups
            .get_mut(&id)
            .filter(|g| g.attached.contains(&node))
            .ok_or(DetachError::NotAttached)?;
        if g.members.iter().any(|m| m.node == node) {
            return Err(DetachError::HasMembers);
        }
        g.unattach(node);
        g.next_view();
        self.collect(id);
        Ok(())
    }

    /// Removes a dead or departed node from every group. Returns the groups
    /// it was attached to, by id; each has a new view or none.
    pub(super) fn drop_node(&mut self, node: NodeId) -> Vec<GroupId> {
        let mut changed = Vec::new();
        for g in self.groups.values_mut() {
            if g.drop_node(node) {
                g.next_view();
                changed.push(g.id);
            }
        }
        for id in &changed {
            self.collect(*id);
        }
        changed
    }

    /// Deletes a dynamic group that lost its last node (its address returns
    /// to the pool). A declared group stays, keeping its id and view
    /// counter; a recovery with nobody left ends.
    pub(super) fn collect(&mut self, id: GroupId) {
        let Some(g) = self.groups.get_mut(&id) else {
            return;
        };
        if !g.attached.is_empty() {
            return;
        }
        g.recovery = None;
        let declared = g.declared;
        if !declared {
            if let Some(g) = self.remove(id) {
                log::info!(
                    "group `{}` ({id}) deleted, {} returned to the pool",
                    g.name,
                    g.address
                );
            }
        }
    }

    /// Applies a new configuration. Declared groups no longer declared end,
    /// as do groups whose address or port changed (they come back under a
    /// new id with the new address); groups that stay keep running under the
    /// new access rules and limits; new groups get the next ids in
    /// declaration order. Returns the groups that ended.
    pub(super) fn reload(
        &mut self,
        decls: &[GroupDecl],
        dynamic: Option<DynamicDecl>,
    ) -> Vec<Ended> {
        self.dynamic = dynamic;
        let mut ended = Vec::new();
        let wanted: BTreeMap<&str, &GroupDecl> =
            decls.iter().rev().map(|d| (d.name.as_str(), d)).collect();
        let ids: Vec<GroupId> = self.groups.keys().copied().collect();
        for id in ids {
            let Some(g) = self.groups.get_mut(&id) else {
                continue;
            };
            match wanted.get(g.name.as_str()) {
                Some(d) if d.address == g.address && d.port == g.port => g.apply(d),
                None if !g.declared => {}
                _ => ended.extend(self.end(id)),
            }
        }
        for decl in decls {
            if self.by_name.contains_key(&decl.name) {
                continue;
            }
            if let Some(id) = self.next_id() {
                log::info!("group `{}` ({id}) declared", decl.name);
                self.insert(Group::declared(id, decl));
            }
        }
        ended
    }

    fn end(&mut self, id: GroupId) -> Option<Ended> {
        let g = self.remove(id)?;
        log::info!("group `{}` ({id}) ended", g.name);
        Some(Ended {
            group: id,
            name: g.name,
            nodes: g.attached.into_iter().collect(),
        })
    }

    /// Groups with a current view that `node` takes part in, by id.
    pub(super) fn attached_to(&self, node: NodeId) -> Vec<GroupId> {
        self.groups
            .values()
            .filter(|g| g.has_view() && g.attached.contains(&node))
            .map(|g| g.id)
            .collect()
    }

    /// Starts the group's next view with the same nodes and members (the
    /// nodes' addresses changed). True if it has a new view.
    pub(super) fn bump(&mut self, id: GroupId) -> bool {
        match self.groups.get_mut(&id).filter(|g| g.has_view()) {
            Some(g) => {
                g.next_view();
                true
            }
            None => false,
        }
    }

    /// Groups being rebuilt from the nodes' reports, by id.
    pub(super) fn recovering(&self) -> Vec<GroupId> {
        self.groups
            .values()
            .filter(|g| g.is_recovering())
            .map(|g| g.id)
            .collect()
    }

    /// Whether any group is being rebuilt.
    pub(super) fn any_recovering(&self) -> bool {
        self.groups.values().any(Group::is_recovering)
    }

    /// Every group, sorted by name.
    pub(super) fn summaries(&self) -> impl Iterator<Item = GroupSummary> + '_ {
        self.by_name
            .values()
            .filter_map(|id| self.groups.get(id))
            .map(Group::summary)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn decl(name: &str, last: u8) -> GroupDecl {
        GroupDecl {
            name: name.into(),
            address: Ipv4Addr::new(239, 0, 0, last),
            port: 7000,
            max_members: None,
            max_message_bytes: None,
            allow_users: None,
            allow_groups: None,
        }
    }

    fn req<'a>(node: u32, group: &'a str, member: u32, name: &'a str) -> JoinRequest<'a> {
        JoinRequest {
            node: NodeId(node),
            node_name: "n",
            group,
            member: MemberId(member),
            member_name: name,
            user: "u",
            unix_groups: &[],
        }
    }

    #[test]
    fn sequencer_rule_keeps_falls_back_to_earliest_member_then_lowest_node() {
        let mut gs = Groups::new(&[decl("g", 1)], None);
        let id = gs.join(&req(5, "g", 1, "a")).expect("ok");
        gs.join(&req(3, "g", 1, "b")).expect("ok");
        gs.join(&req(4, "g", 1, "c")).expect("ok");
        assert_eq!(gs.get(id).expect("group").sequencer, Some(NodeId(5)));
        // Node 5 leaves but stays attached: it keeps sequencing.
        assert!(gs.leave(NodeId(5), id, MemberId(1)));
        assert_eq!(gs.get(id).expect("group").sequencer, Some(NodeId(5)));
        // Node 5 detaches: the earliest remaining member is on node 3.
        gs.detach(NodeId(5), id).expect("ok");
        assert_eq!(gs.get(id).expect("group").sequencer, Some(NodeId(3)));
        // Everyone leaves; node 3 stays sequencer while attached.
        assert!(gs.leave(NodeId(3), id, MemberId(1)));
        assert!(gs.leave(NodeId(4), id, MemberId(1)));
        gs.detach(NodeId(3), id).expect("ok");
        // No member left: the lowest attached node.
        assert_eq!(gs.get(id).expect("group").sequencer, Some(NodeId(4)));
        // Three joins, three leaves, two detaches: eight views.
        assert_eq!(gs.get(id).expect("group").view, ViewId(8));
    }

    #[test]
    fn reload_keeps_changes_and_ends() {
        let mut gs = Groups::new(&[decl("a", 1), decl("b", 2), decl("c", 3)], None);
        gs.join(&req(1, "a", 1, "x")).expect("ok");
        gs.join(&req(1, "c", 1, "x")).expect("ok");
        let mut a = decl("a", 1);
        a.max_members = Some(1);
        let ended = gs.reload(&[decl("d", 4), a, decl("c", 9)], None);
        assert_eq!(
            ended,
            vec![
                Ended {
                    group: GroupId(2),
                    name: "b".into(),
                    nodes: vec![]
                },
                Ended {
                    group: GroupId(3),
                    name: "c".into(),
                    nodes: vec![NodeId(1)]
                },
            ]
        );
        assert_eq!(gs.by_name("a").map(|g| g.id), Some(GroupId(1)));
        assert_eq!(gs.by_name("d").map(|g| g.id), Some(GroupId(4)));
        assert_eq!(
            gs.by_name("c").map(|g| (g.id, g.address)),
            Some((GroupId(5), Ipv4Addr::new(239, 0, 0, 9)))
        );
        assert!(gs
            .join(&req(2, "a", 1, "y"))
            .expect_err("refused")
            .contains("max_members"));
    }
}
