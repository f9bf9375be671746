//! Random scripts of inputs: whatever the daemons do, the views the
//! directory hands out stay well-formed and the sequencer rule holds.

use super::*;
use proptest::prelude::*;
use std::collections::{BTreeMap, BTreeSet};

const NAMES: [&str; 3] = ["a", "b", "c"];
const GROUPS: [&str; 4] = ["chat", "idle", "d1", "d2"];

#[derive(Debug, Clone)]
enum Input {
    Connect(u64),
    Disconnect(u64),
    Advance(u64),
    Reload(bool),
    Frame(u64, ToDirectory),
}

/// Where each group of [`GROUPS`] lives (with one wrong address).
fn place(g: usize) -> (Ipv4Addr, u16) {
    match g {
        0 => (Ipv4Addr::new(239, 192, 0, 1), 7410),
        1 => (Ipv4Addr::new(239, 192, 0, 2), 7410),
        2 => (Ipv4Addr::new(239, 192, 100, 1), 7420),
        3 => (Ipv4Addr::new(239, 192, 100, 2), 7420),
        _ => (Ipv4Addr::new(239, 192, 0, 99), 7410),
    }
}

fn resume() -> impl Strategy<Value = ToDirectory> {
    (
        1u32..7,
        0..GROUPS.len(),
        0..5usize,
        0u64..12,
        1u32..7,
        0u8..8,
    )
        .prop_map(|(group, g, at, view, sequencer, members)| {
            let (address, port) = place(if at < 4 { g } else { at });
            let names = ["x", "y", "z"];
            ToDirectory::Resume(Resume {
                group: GroupId(group),
                group_name: GROUPS[g].into(),
                address,
                port,
                view: ViewId(view),
                sequencer: NodeId(sequencer),
                since: ViewId(1),
                members: (0..3u32)
                    .filter(|m| members & (1 << m) != 0)
                    .map(|m| (MemberId(m + 1), names[m as usize].into()))
                    .collect(),
            })
        })
}

fn frame() -> impl Strategy<Value = ToDirectory> {
    prop_oneof![
        1 => (0..NAMES.len(), 1u64..3, 0u32..7)
            .prop_map(|(n, inc, prev)| {
                let prev = Some(NodeId(prev)).filter(|p| p.0 != 0);
                Script::hello_again(NAMES[n], inc, prev)
            }),
        3 => resume(),
        1 => Just(ToDirectory::Heartbeat),
        8 => (0..GROUPS.len(), 1u32..4, 0..2usize, 0..5u8).prop_map(|(g, m, n, who)| {
            ToDirectory::Join {
                group: GROUPS[g].into(),
                member: MemberId(m),
                member_name: ["x", "y"][n].into(),
                user: if who > 0 { "alice" } else { "mallory" }.into(),
                unix_groups: vec![],
            }
        }),
        4 => (1u32..7, 1u32..4).prop_map(|(g, m)| ToDirectory::Leave { group: GroupId(g), member: MemberId(m) }),
        3 => (1u32..7).prop_map(|g| ToDirectory::Detach { group: GroupId(g) }),
        1 => any::<u32>().prop_map(|request| ToDirectory::ListGroups { request }),
        1 => Just(ToDirectory::Goodbye),
    ]
}

fn input() -> impl Strategy<Value = Input> {
    prop_oneof![
        1 => (1u64..4).prop_map(Input::Connect),
        1 => (1u64..4).prop_map(Input::Disconnect),
        1 => (0u64..500).prop_map(Input::Advance),
        1 => any::<bool>().prop_map(Input::Reload),
        16 => ((1u64..4), frame()).prop_map(|(c, f)| Input::Frame(c, f)),
    ]
}

/// Three connections that said Hello, then the random inputs.
fn script() -> impl Strategy<Value = Vec<Input>> {
    proptest::collection::vec(input(), 1..150).prop_map(|rest| {
        let mut inputs = Vec::new();
        for (c, name) in (1u64..).zip(NAMES) {
            inputs.push(Input::Connect(c));
            inputs.push(Input::Frame(c, Script::hello_frame(name, 1)));
        }
        inputs.extend(rest);
        inputs
    })
}

fn config(variant: bool) -> DirectorySettings {
    let mut chat = decl("chat", 1);
    chat.allow_users = Some(vec!["alice".into()]);
    chat.max_members = Some(3);
    let groups = if variant {
        vec![chat, decl("idle", 2)]
    } else {
        vec![chat]
    };
    settings(groups, Some(pool()))
}

/// What the test has seen of the directory's inputs and output.
#[derive(Default)]
struct Seen {
    /// conn -> the (name, incarnation) of the last Hello sent on it.
    hellos: BTreeMap<ConnId, (String, Incarnation)>,
    /// node id -> the life it was first given to.
    lives: BTreeMap<NodeId, (String, Incarnation)>,
    /// conn -> node, from Welcome frames.
    nodes: BTreeMap<ConnId, NodeId>,
    /// group -> last view sent.
    views: BTreeMap<GroupId, View>,
    /// Every view sent, by (group, view id).
    sent: BTreeMap<(GroupId, ViewId), View>,
    /// Groups seen without a current view since their last view was sent.
    gaps: BTreeSet<GroupId>,
}

impl Seen {
    fn check(&mut self, conn: ConnId, f: &FromDirectory) -> Result<(), TestCaseError> {
        match f {
            FromDirectory::Welcome { node, .. } => {
                let life = self.hellos.get(&conn).cloned();
                prop_assert!(life.is_some(), "Welcome without a Hello");
                let life = life.unwrap_or_default();
                let first = self.lives.entry(*node).or_insert_with(|| life.clone());
                prop_assert_eq!(&*first, &life, "a node id given to two lives");
                self.nodes.insert(conn, *node);
            }
            FromDirectory::View(v) => self.check_view(conn, v)?,
            _ => {}
        }
        Ok(())
    }

    fn check_view(&mut self, conn: ConnId, v: &View) -> Result<(), TestCaseError> {
        let ids: Vec<NodeId> = v.nodes.iter().map(|n| n.node).collect();
        prop_assert!(ids.windows(2).all(|w| w[0] < w[1]), "nodes sorted: {ids:?}");
        prop_assert!(ids.contains(&v.sequencer), "sequencer attached");
        prop_assert!(
            v.members.iter().all(|m| ids.contains(&m.node)),
            "member nodes attached"
        );
        let recipient = self.nodes.get(&conn).copied();
        prop_assert!(
            recipient.is_some_and(|r| ids.contains(&r)),
            "sent to a node in the view"
        );
        let mut names: Vec<(NodeId, &str)> = v
            .members
            .iter()
            .map(|m| (m.node, m.name.as_str()))
            .collect();
        names.sort();
        names.dedup();
        prop_assert_eq!(names.len(), v.members.len(), "display names unique");
        if self.views.get(&v.group).is_some_and(|l| v.view < l.view) {
            // A node back on a new link is told the recent views again.
            let earlier = self.sent.get(&(v.group, v.view));
            prop_assert_eq!(
                earlier,
                Some(v),
                "a view told again is the view sent before"
            );
            return Ok(());
        }
        self.sent.insert((v.group, v.view), v.clone());
        if let Some(last) = self.views.get(&v.group) {
            let continuous = !self.gaps.contains(&v.group);
            if v.view == last.view {
                prop_assert_eq!(v, last, "one view id, one view");
            } else if continuous && v.view.0 == last.view.0 + 1 && ids.contains(&last.sequencer) {
                prop_assert_eq!(v.sequencer, last.sequencer, "sequencer kept while attached");
            }
        }
        self.views.insert(v.group, v.clone());
        self.gaps.remove(&v.group);
        Ok(())
    }
}

proptest! {
    #[test]
    fn views_stay_well_formed(inputs in script()) {
        let mut d = Directory::new(config(false));
        let mut now = ms(0);
        let mut seen = Seen::default();
        for input in inputs {
            match input {
                Input::Connect(c) => d.handle_connect(now, ConnId(c)),
                Input::Disconnect(c) => d.handle_disconnect(now, ConnId(c)),
                Input::Advance(dt) => {
                    now = now + Duration::from_millis(dt);
                    d.handle_timeout(now);
                }
                Input::Reload(v) => d.handle_reload(now, config(v)),
                Input::Frame(c, f) => {
                    if let ToDirectory::Hello { name, incarnation, .. } = &f {
                        seen.hellos.insert(ConnId(c), (name.clone(), *incarnation));
                    }
                    d.handle_frame(now, ConnId(c), f)
                }
            }
            while let Some((conn, f)) = d.poll_output() {
                seen.check(conn, &f)?;
            }
            while let Some(conn) = d.poll_close() {
                seen.nodes.remove(&conn);
            }
            for g in seen.views.keys() {
                if d.current_view(*g).is_none() {
                    seen.gaps.insert(*g);
                }
            }
            prop_assert!(!matches!(d.poll_timeout(), Some(t) if t <= now), "no deadline left behind");
            prop_assert!(d.nodes().count() <= NAMES.len());
        }
    }
}
