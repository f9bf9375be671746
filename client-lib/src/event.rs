//! What the daemon tells an application: views, messages and replies.

use chorus_proto::wire::app::{self, FromDaemon, GroupLine};
use chorus_proto::Order;

/// Something delivered to a member, in delivery order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// A new view of a joined group.
    View(ViewInfo),
    /// A message delivered in a joined group.
    Message(Message),
    /// The member is no longer with the others of a group, though its app
    /// did not leave (see [`Separation`]).
    Separated(Separation),
}

/// A membership that ended without the app asking: this node was declared
/// dead (its lease ran out while it was paused, overloaded or cut off from
/// the directory) or the directory dropped it from the group. Messages the
/// others deliver after `view` do not reach this member; nothing of `view`
/// or before was skipped (what was delivered is a prefix of the others'
/// sequence in it).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Separation {
    pub group: String,
    /// The last view this member installed.
    pub view: u64,
    /// True when the daemon joins the member again by itself: a new
    /// [`Event::View`] follows once the directory admits it. False: the
    /// membership is over, and the app must join again.
    pub rejoining: bool,
    /// Why, in words for a log.
    pub reason: String,
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
    /// Whether the daemon is registered with its directory: only then can
    /// it serve joins (`chorusctl status` exits 69 while it is not).
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

/// The daemon's counters, as `chorusctl stats` shows them: what its data
/// path did since it started (the counters never go down: take two and
/// subtract to see a period), and the state of each group's send stream.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Stats {
    /// Datagrams received on the data and multicast sockets.
    pub datagrams_in: u64,
    /// Bytes of those datagrams.
    pub bytes_in: u64,
    /// Datagrams sent by the daemon's protocol thread (DATA, repairs, NAKs,
    /// acknowledgements; not the sequencer's ORDER datagrams).
    pub datagrams_out: u64,
    /// Bytes of those datagrams.
    pub bytes_out: u64,
    /// Datagrams dropped as malformed.
    pub malformed_in: u64,
    /// Messages the daemon accepted from local applications.
    pub messages_accepted: u64,
    /// Messages delivered on this node (once per message, however many
    /// local members received it).
    pub messages_delivered: u64,
    /// NAKs sent: requests to resend data or order this node lacks.
    pub naks_sent: u64,
    /// NAKs received for this node's own stream (each a loss signal).
    pub naks_received: u64,
    /// DATA datagrams sent again: answers to NAKs, repairs, tail probes.
    pub retransmits: u64,
    /// Tail probes: the last message resent because the sequencer had not
    /// ordered it for a while.
    pub tail_probes: u64,
    /// Times a loss halved a group's flow window.
    pub window_decreases: u64,
    /// Datagrams of another cluster id (another deployment on the same
    /// network or port), ignored.
    pub dropped_other_cluster: u64,
    /// Datagrams for a group this node takes no part in, ignored.
    pub dropped_no_group: u64,
    /// Messages received again after the first copy was held or delivered
    /// (this node's own multicast, looped back, is not counted).
    pub dropped_duplicate: u64,
    /// Messages past this node's receive window: not kept, and asked for
    /// again once the window reaches them (this node is falling behind).
    pub dropped_beyond_window: u64,
    /// Messages from before the position this node delivers a sender's
    /// stream from (sent before it joined).
    pub dropped_before_base: u64,
    /// Application sessions disconnected for not reading: their undelivered
    /// messages passed `session_queue_bytes`.
    pub sessions_dropped_slow: u64,
    /// Datagrams refused unopened: another key, altered, forged, or not
    /// sealed in a keyed cluster.
    pub refused_unauthentic: u64,
    /// Authentic datagrams refused as replays.
    pub refused_replayed: u64,
    /// The groups this node takes part in.
    pub groups: Vec<GroupStats>,
}

/// One group in [`Stats`]: this node's send stream in it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupStats {
    pub name: String,
    /// The view installed on this node.
    pub view: u64,
    /// True when this node assigns the group's total order.
    pub sequencer: bool,
    /// Messages in this node's send stream: accepted, not yet stable.
    pub queued: u32,
    /// Bytes of this node's stream sent and not yet ordered.
    pub in_flight_bytes: u64,
    /// The flow window: bytes that may be in flight now.
    pub window_bytes: u64,
    /// The window's cap: this node's share of the receivers' buffers.
    pub window_cap_bytes: u64,
}

impl From<app::DaemonStats> for Stats {
    fn from(s: app::DaemonStats) -> Self {
        Stats {
            datagrams_in: s.counters.datagrams_in,
            bytes_in: s.counters.bytes_in,
            datagrams_out: s.counters.datagrams_out,
            bytes_out: s.counters.bytes_out,
            malformed_in: s.counters.malformed_in,
            messages_accepted: s.counters.messages_accepted,
            messages_delivered: s.counters.messages_delivered,
            naks_sent: s.counters.naks_sent,
            naks_received: s.counters.naks_received,
            retransmits: s.counters.retransmits,
            tail_probes: s.counters.tail_probes,
            window_decreases: s.counters.window_decreases,
            dropped_other_cluster: s.counters.dropped_other_cluster,
            dropped_no_group: s.counters.dropped_no_group,
            dropped_duplicate: s.counters.dropped_duplicate,
            dropped_beyond_window: s.counters.dropped_beyond_window,
            dropped_before_base: s.counters.dropped_before_base,
            sessions_dropped_slow: s.counters.sessions_dropped_slow,
            refused_unauthentic: s.counters.refused_unauthentic,
            refused_replayed: s.counters.refused_replayed,
            groups: s.groups.into_iter().map(Into::into).collect(),
        }
    }
}

impl From<app::GroupStats> for GroupStats {
    fn from(g: app::GroupStats) -> Self {
        GroupStats {
            name: g.name,
            view: g.view.0,
            sequencer: g.sequencer,
            queued: g.queued,
            in_flight_bytes: g.in_flight_bytes,
            window_bytes: g.window_bytes,
            window_cap_bytes: g.window_cap_bytes,
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
                group: group.to_string(),
                view: view.0,
                sender: sender.to_string(),
                order,
                seq,
                // The decoder's own copy: taken over, not copied again.
                payload: Vec::from(payload),
            })),
            FromDaemon::Separated {
                group,
                view,
                rejoining,
                reason,
            } => Ok(Event::Separated(Separation {
                group,
                view: view.0,
                rejoining,
                reason,
            })),
            other => Err(other),
        }
    }
}
