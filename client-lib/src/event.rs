//! What the daemon tells an application: views, messages and replies.

use chorus_proto::wire::app::{FromDaemon, GroupLine};
use chorus_proto::Order;

/// Something delivered to a member, in delivery order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// A new view of a joined group.
    View(ViewInfo),
    /// A message delivered in a joined group.
    Message(Message),
}

/// A view: who is in the group, and which node orders it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ViewInfo {
    pub group: String,
    /// Increases with every membership change.
    pub view: u64,
    /// Members as `NODE:NAME`.
    pub members: Vec<String>,
    /// The node (name) whose daemon assigns the group's total order.
    pub sequencer: String,
}

/// A delivered message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Message {
    pub group: String,
    /// The view it was delivered in.
    pub view: u64,
    /// The sending member, `NODE:NAME`.
    pub sender: String,
    /// The delivery service the sender asked for.
    pub order: Order,
    /// The group's total-order position (total and safe: the same at every
    /// member); for fifo, the position in the sender's stream.
    pub seq: u64,
    pub payload: Vec<u8>,
}

/// The daemon's state, as `chorusctl status` shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Status {
    /// This node's name.
    pub node: String,
    /// The number the directory gave this node.
    pub node_id: u32,
    /// This life of the daemon.
    pub incarnation: u64,
    /// The directory address in use; while the daemon has no directory
    /// link, the configured addresses, comma-separated.
    pub directory: String,
    /// Whether the daemon is connected to the directory.
    pub connected: bool,
    /// Groups this node takes part in.
    pub groups: u32,
    /// Local members across all groups.
    pub members: u32,
    /// The daemon's version.
    pub version: String,
}

/// One group known to the daemon.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupInfo {
    pub name: String,
    /// Multicast address and port, e.g. "239.192.0.10:7410".
    pub address: String,
    pub view: u64,
    /// Members in the current view (all nodes).
    pub members: u32,
    /// True when this node takes part in the group.
    pub local: bool,
}

impl From<GroupLine> for GroupInfo {
    fn from(g: GroupLine) -> Self {
        GroupInfo {
            name: g.name,
            address: g.address,
            view: g.view.0,
            members: g.members,
            local: g.local,
        }
    }
}

impl Event {
    /// The event a View or Message frame carries; `Err` gives back any other frame.
    pub(crate) fn from_frame(msg: FromDaemon) -> Result<Event, FromDaemon> {
        match msg {
            FromDaemon::View {
                group,
                view,
                members,
                sequencer,
            } => Ok(Event::View(ViewInfo {
                group,
                view: view.0,
                members,
                sequencer,
            })),
            FromDaemon::Message {
                group,
                view,
                sender,
                order,
                seq,
                payload,
            } => Ok(Event::Message(Message {
                group,
                view: view.0,
                sender,
                order,
                seq,
                payload,
            })),
            other => Err(other),
        }
    }
}
