//! Stability safety: the sequencer never declares a position stable before
//! every member of its view holds it. Senders free their buffers and `safe`
//! messages are released on that declaration, so a premature one is how a
//! message gets lost for good.
//!
//! After every step in which a sequencer's stability point moved, each
//! member the sequencer was last told of (by the host's `View` input) that
//! still runs with the same incarnation and takes part in the group must
//! hold everything through that point (`GroupState::held_through`, which
//! only grows). A member whose order has not started yet (held through 0)
//! is not judged: it is responsible only from its view's start, which the
//! sequencer counts as already held. Nor is a group the host has asked to
//! detach from (`detach_sent`): if the node joins again meanwhile, the
//! sequencer counts its new attachment, not this one.

use crate::node::Node;
use chorus_proto::{GlobalSeq, GroupId, Incarnation, NodeId, ViewId};
use std::collections::BTreeMap;

/// A view's members as a sequencer is told them.
type Members = Vec<(NodeId, Incarnation)>;

/// What each sequencer was told and the stability last judged.
#[derive(Debug, Default)]
pub struct Stability {
    /// The latest view each sequencer was told, with its members (a host
    /// tells its sequencer each view it installs, and installs lag: an
    /// older one told later changes nothing at the sequencer).
    told: BTreeMap<(usize, GroupId), (ViewId, Members)>,
    judged: BTreeMap<(usize, GroupId), GlobalSeq>,
}

impl Stability {
    /// The sequencer at `node` was told the members of `group`.
    pub fn on_view(
        &mut self,
        node: usize,
        group: GroupId,
        view: ViewId,
        members: &[(NodeId, Incarnation)],
    ) {
        let told = self.told.get(&(node, group));
        if told.is_none_or(|(v, _)| *v <= view) {
            self.told.insert((node, group), (view, members.to_vec()));
        }
    }

    /// The sequencer at `node` stopped sequencing `group` (or the node
    /// died): what it was told starts over.
    pub fn forget(&mut self, node: usize, group: GroupId) {
        self.told.remove(&(node, group));
    }

    /// Judges the sequencer at `s` (call after it handled anything).
    pub fn check(&mut self, nodes: &[Node], s: usize) -> Result<(), String> {
        let Some(seq) = nodes[s].seq.as_ref().filter(|_| nodes[s].alive) else {
            return Ok(());
        };
        for gid in seq.groups() {
            let Some((stable, _)) = seq.stability(gid) else {
                continue;
            };
            let judged = self.judged.entry((s, gid)).or_insert(GlobalSeq(0));
            if stable <= *judged {
                continue;
            }
            *judged = stable;
            let Some((_, members)) = self.told.get(&(s, gid)) else {
                continue;
            };
            for &(node, inc) in members {
                let holder = nodes.iter().find(|n| {
                    n.alive && n.host.node() == Some(node) && n.host.settings().incarnation == inc
                });
                // A group we asked to detach from is not the attachment the
                // sequencer counts once the node joins again: not judged.
                let Some(g) = holder
                    .and_then(|n| n.host.group(gid))
                    .filter(|g| !g.detach_sent)
                else {
                    continue;
                };
                let held = g.held_through();
                if held.0 != 0 && held < stable {
                    return Err(format!(
                        "sequencer h{s} declared group {gid} stable through {stable} but node {node} holds only through {held}"
                    ));
                }
            }
        }
        Ok(())
    }
}
