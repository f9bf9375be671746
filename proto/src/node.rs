//! What every node driver does around the [`Host`](crate::host::Host) and
//! its sequencer besides feeding them inputs: heartbeat the directory at the
//! pace its Welcome asks for, and configure the sequencer from the Welcome.
//! chorusd's IO loop and the simulator both use [`NodeDriver`], so the two
//! cannot drift apart.
//!
//! Sans IO like the rest of the crate: every call carries `now`, the driver
//! sends what it is handed and wakes by [`NodeDriver::poll_timeout`].

use crate::host::HostSettings;
use crate::order::sequencer::SequencerSettings;
use crate::time::{Duration, Instant};
use crate::wire::directory::{FromDirectory, ToDirectory};
use crate::{ClusterId, NodeId};

/// How often a sequencer multicasts an empty ORDER for a group it sent
/// nothing for. Such a heartbeat tells the members where the order ends, so
/// a member that lost the tail of the order notices the gap and NAKs it
/// even when the group goes quiet, and it carries the latest `stable`.
/// Neither the daemon's configuration nor the directory's Welcome carries
/// it: it is a protocol constant, the same at every node.
pub const ORDER_HEARTBEAT: Duration = Duration::from_millis(100);

/// The shortest directory heartbeat interval, whatever a Welcome asks for.
pub const MIN_DIRECTORY_HEARTBEAT: Duration = Duration::from_millis(10);

/// The settings of the sequencer a node runs once the directory welcomed
/// it as `node` of `cluster`: the host's incarnation, datagram size, ack
/// interval (as the sequencer's tick) and retransmission timeout, and
/// [`ORDER_HEARTBEAT`].
pub fn sequencer_settings(
    host: &HostSettings,
    node: NodeId,
    cluster: ClusterId,
) -> SequencerSettings {
    SequencerSettings {
        node,
        incarnation: host.incarnation,
        cluster,
        max_datagram_bytes: host.max_datagram_bytes,
        tick: host.ack_interval,
        retransmit: host.retransmit,
        heartbeat: ORDER_HEARTBEAT,
    }
}

/// The edge state of one node's link to the directory: the heartbeat
/// schedule. Heartbeats start at a Welcome and stop when the link is lost.
#[derive(Debug, Clone, Default)]
pub struct NodeDriver {
    /// The interval the last Welcome asked for (at least
    /// [`MIN_DIRECTORY_HEARTBEAT`]), while the link is up.
    heartbeat: Option<Duration>,
    /// When the next heartbeat is due.
    next_heartbeat: Option<Instant>,
    /// How long after it was due the last heartbeat went out.
    last_lateness: Duration,
    /// The lease the last Welcome granted.
    lease: Option<Duration>,
    /// When the directory last heard from us, as far as we know: the last
    /// Welcome or heartbeat.
    last_beat: Option<Instant>,
    /// Found silent for (about) a lease: see [`NodeDriver::take_lapse`].
    lapse: Option<Duration>,
    /// The heartbeat interval the last Welcome asked for (kept while the
    /// link is down, for [`NodeDriver::on_wake`]).
    beat_every: Option<Duration>,
    /// When the edge last woke (see [`NodeDriver::on_wake`]).
    last_wake: Option<Instant>,
}

impl NodeDriver {
    /// A node not yet welcomed: no heartbeats.
    pub fn new() -> NodeDriver {
        NodeDriver::default()
    }

    /// A frame from the directory, before the host gets it. A Welcome
    /// (re)starts the heartbeats, the first due one interval from `now`, and
    /// returns the settings to start the sequencer with (or reconfigure it:
    /// a node welcomed again under the same identity keeps its sequencer's
    /// state). Other frames change nothing here.
    pub fn on_directory_frame(
        &mut self,
        now: Instant,
        host: &HostSettings,
        frame: &FromDirectory,
    ) -> Option<SequencerSettings> {
        let FromDirectory::Welcome {
            node,
            cluster,
            lease_ms,
            heartbeat_ms,
            ..
        } = frame
        else {
            return None;
        };
        let every = Duration::from_millis(u64::from(*heartbeat_ms)).max(MIN_DIRECTORY_HEARTBEAT);
        self.heartbeat = Some(every);
        self.next_heartbeat = Some(now + every);
        self.lease = Some(Duration::from_millis(u64::from(*lease_ms)));
        self.beat_every = Some(every);
        // The lease runs from here: the directory may hold a Hello for a
        // while before it registers the node (its grace period after a
        // start). A daemon stopped after its Hello, which reads the Welcome
        // late, finds that out by `on_wake`.
        self.last_beat = Some(now);
        Some(sequencer_settings(host, *node, *cluster))
    }

    /// The link to the directory is up at `now` and the host says Hello:
    /// the directory hears from us.
    pub fn on_directory_connected(&mut self, now: Instant) {
        self.last_beat = Some(now);
        self.lapse = None;
    }

    /// The directory link is lost (or cut) at `now`: heartbeats stop until
    /// the next Welcome. A link lost after we were silent for about a lease
    /// (paused, starved, cut off) is a lapse: the directory may have
    /// declared us dead before the link went.
    pub fn on_directory_lost(&mut self, now: Instant) {
        if self.heartbeat.is_some() {
            self.note_silence(now);
        }
        self.heartbeat = None;
        self.next_heartbeat = None;
    }

    /// Records a lapse if the directory has not heard from us for the
    /// lease less one heartbeat interval (a margin for the frames' way).
    fn note_silence(&mut self, now: Instant) {
        let (Some(last), Some(lease), Some(every)) = (self.last_beat, self.lease, self.heartbeat)
        else {
            return;
        };
        let silent = now.saturating_since(last);
        if silent.as_micros() + every.as_micros() >= lease.as_micros() {
            self.lapse = Some(silent);
        }
    }

    /// The edge woke at `now` (chorusd: every turn of its loop, which
    /// sleeps at most a tick; the simulator: when a paused node runs
    /// again). A gap of about a lease since the last wake means this
    /// process was not running (stopped, or starved): whatever the state
    /// of the directory link, the directory may have declared it dead
    /// meanwhile, so that is a lapse too. Call it before handing the host
    /// anything that arrived meanwhile.
    pub fn on_wake(&mut self, now: Instant) {
        if let (Some(last), Some(lease), Some(every)) =
            (self.last_wake, self.lease, self.beat_every)
        {
            // A long turn that sent heartbeats between its batches kept the
            // lease: the gap counts from the later of the two.
            let last = self.last_beat.map_or(last, |b| b.max(last));
            let gap = now.saturating_since(last);
            if gap.as_micros() + every.as_micros() >= lease.as_micros() {
                self.lapse = Some(self.lapse.unwrap_or(gap).max(gap));
            }
        }
        self.last_wake = Some(now);
    }

    /// How long we were silent, once, if we may have outlived our lease at
    /// the directory (found by [`NodeDriver::poll_heartbeat`] or
    /// [`NodeDriver::on_directory_lost`]). The edge then tells the host
    /// ([`crate::host::Host::handle_lease_lapsed`]): our old identity may be
    /// dead for the others, and must not go on as if nothing happened.
    pub fn take_lapse(&mut self) -> Option<Duration> {
        self.lapse.take()
    }

    /// The heartbeat to send to the directory if one is due at `now`. The
    /// next one is due one interval after this one was, so heartbeats keep
    /// their pace however late the driver wakes, but never at or before
    /// `now` (a driver that slept through several sends one, not a burst).
    pub fn poll_heartbeat(&mut self, now: Instant) -> Option<ToDirectory> {
        let (due, every) = (self.next_heartbeat?, self.heartbeat?);
        if due > now {
            return None;
        }
        self.note_silence(now);
        self.last_beat = Some(now);
        let next = due + every;
        self.next_heartbeat = Some(if next <= now { now + every } else { next });
        self.last_lateness = now.saturating_since(due);
        Some(ToDirectory::Heartbeat)
    }

    /// How long after it was due the last heartbeat went out: how long the
    /// driver kept the directory waiting. The directory declares a node dead
    /// once it heard nothing for a lease (four intervals), so a driver that
    /// sees this reach an interval is too busy or not scheduled.
    pub fn last_lateness(&self) -> Duration {
        self.last_lateness
    }

    /// The heartbeat interval, while the link is up and welcomed.
    pub fn interval(&self) -> Option<Duration> {
        self.heartbeat
    }

    /// When [`NodeDriver::poll_heartbeat`] has something next.
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.next_heartbeat
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Incarnation;
    use std::net::Ipv4Addr;

    fn host() -> HostSettings {
        HostSettings {
            node_name: "a".into(),
            incarnation: Incarnation(7),
            ip: Ipv4Addr::LOCALHOST,
            data_port: 1,
            order_port: 2,
            max_datagram_bytes: 1400,
            max_message_bytes: 1 << 20,
            send_window_messages: 8,
            receive_window_messages: 8,
            ack_interval: Duration::from_millis(5),
            retransmit: Duration::from_millis(30),
            flow_budget_bytes: 1 << 20,
            directory_label: String::new(),
            version: String::new(),
        }
    }

    fn welcome(heartbeat_ms: u32) -> FromDirectory {
        FromDirectory::Welcome {
            node: NodeId(3),
            cluster: ClusterId(9),
            lease_ms: 1000,
            heartbeat_ms,
            epoch: crate::ids::Epoch(0),
        }
    }

    fn ms(ms: u64) -> Instant {
        Instant::from_micros(ms * 1000)
    }

    #[test]
    fn a_welcome_configures_the_sequencer_from_the_host() {
        let mut d = NodeDriver::new();
        let s = d
            .on_directory_frame(ms(0), &host(), &welcome(100))
            .expect("settings");
        assert_eq!(s.node, NodeId(3));
        assert_eq!(s.incarnation, Incarnation(7));
        assert_eq!(s.cluster, ClusterId(9));
        assert_eq!(s.max_datagram_bytes, 1400);
        assert_eq!(s.tick, Duration::from_millis(5));
        assert_eq!(s.retransmit, Duration::from_millis(30));
        assert_eq!(s.heartbeat, ORDER_HEARTBEAT);
        let other = FromDirectory::GroupEnded {
            group: crate::GroupId(1),
        };
        assert!(d.on_directory_frame(ms(0), &host(), &other).is_none());
    }

    #[test]
    fn heartbeats_keep_their_pace_from_the_welcome_until_the_link_is_lost() {
        let mut d = NodeDriver::new();
        assert_eq!(d.poll_timeout(), None);
        assert_eq!(d.poll_heartbeat(ms(1000)), None);
        d.on_directory_frame(ms(10), &host(), &welcome(100));
        assert_eq!(d.poll_timeout(), Some(ms(110)));
        assert_eq!(d.poll_heartbeat(ms(109)), None);
        // Woken late: the next one is still due on the original pace.
        assert_eq!(d.poll_heartbeat(ms(150)), Some(ToDirectory::Heartbeat));
        assert_eq!(d.last_lateness(), Duration::from_millis(40));
        assert_eq!(d.interval(), Some(Duration::from_millis(100)));
        assert_eq!(d.poll_timeout(), Some(ms(210)));
        assert_eq!(d.poll_heartbeat(ms(150)), None);
        // Slept through several: one heartbeat, the next one interval on.
        assert_eq!(d.poll_heartbeat(ms(500)), Some(ToDirectory::Heartbeat));
        assert_eq!(d.last_lateness(), Duration::from_millis(290));
        assert_eq!(d.poll_timeout(), Some(ms(600)));
        d.on_directory_lost(ms(500));
        assert_eq!(d.interval(), None);
        assert_eq!(d.poll_timeout(), None);
        assert_eq!(d.poll_heartbeat(ms(1000)), None);
    }

    #[test]
    fn the_heartbeat_interval_has_a_floor() {
        let mut d = NodeDriver::new();
        d.on_directory_frame(ms(0), &host(), &welcome(1));
        assert_eq!(d.poll_timeout(), Some(ms(10)));
    }

    /// Silence of about a lease is a lapse, found when the next heartbeat
    /// goes out late or when the link is found lost; a link lost soon after
    /// a heartbeat (the directory restarted) is none, however long it then
    /// stays down.
    #[test]
    fn silence_of_a_lease_is_a_lapse() {
        // Lease 1000 ms, heartbeat every 250 ms: a lapse from 750 ms on.
        let mut d = NodeDriver::new();
        d.on_directory_frame(ms(0), &host(), &welcome(250));
        assert!(d.poll_heartbeat(ms(250)).is_some());
        assert!(d.poll_heartbeat(ms(740)).is_some());
        assert_eq!(d.take_lapse(), None, "490 ms late is no lapse");
        assert!(d.poll_heartbeat(ms(1600)).is_some());
        assert_eq!(d.take_lapse(), Some(Duration::from_millis(860)));
        assert_eq!(d.take_lapse(), None, "told once");

        let mut d = NodeDriver::new();
        d.on_directory_frame(ms(0), &host(), &welcome(250));
        assert!(d.poll_heartbeat(ms(250)).is_some());
        d.on_directory_lost(ms(300));
        assert_eq!(d.take_lapse(), None, "lost soon after a heartbeat");
        d.on_directory_lost(ms(5000));
        assert_eq!(d.take_lapse(), None, "a link already down lapses no more");

        let mut d = NodeDriver::new();
        d.on_directory_frame(ms(0), &host(), &welcome(250));
        // Paused from 100 ms to 3 s: the link is found lost on waking.
        d.on_directory_lost(ms(3000));
        assert_eq!(d.take_lapse(), Some(Duration::from_millis(3000)));

        // Stopped while the link was down: found on waking.
        let mut d = NodeDriver::new();
        d.on_wake(ms(0));
        d.on_directory_frame(ms(0), &host(), &welcome(250));
        d.on_directory_lost(ms(100));
        assert_eq!(d.take_lapse(), None);
        d.on_wake(ms(600));
        assert_eq!(d.take_lapse(), None, "600 ms awake is no lapse");
        d.on_wake(ms(2600));
        assert_eq!(d.take_lapse(), Some(Duration::from_millis(2000)));

        // A Hello held for a while (the directory's grace period) is no
        // silence: the lease runs from the Welcome.
        d.on_directory_connected(ms(4000));
        d.on_directory_frame(ms(5500), &host(), &welcome(250));
        d.on_directory_lost(ms(5530));
        assert_eq!(d.take_lapse(), None);
    }
}
