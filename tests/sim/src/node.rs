//! One simulated chorusd: the very same [`Host`] and [`Sequencer`] state
//! machines, driven in the host's documented call order. Outputs are drained
//! with [`drive::drain`], the function chorusd's IO thread uses, into an
//! [`Outbox`] that the world then routes.

use crate::net::{node_ip, DATA_PORT, ORDER_PORT};
use crate::plan::HostParams;
use chorus_proto::directory::ConnId;
use chorus_proto::host::drive::{self, HostSink};
use chorus_proto::host::{Host, HostSettings, MulticastChange, SessionId};
use chorus_proto::node::NodeDriver;
use chorus_proto::order::sequencer::{Sequencer, SequencerInput, SequencerSettings};
use chorus_proto::wire::app::FromDaemon;
use chorus_proto::wire::directory::ToDirectory;
use chorus_proto::wire::seal::{
    ClusterKey, DatagramSeal, KeyRing, SessionSalt, KEY_BYTES, SEAL_OVERHEAD_BYTES,
};
use chorus_proto::{Duration, Incarnation, Instant};
use std::net::SocketAddrV4;

/// What a host produced in one drain, in the order drain produced it.
#[derive(Debug, Default)]
pub struct Outbox {
    pub mcast: Vec<MulticastChange>,
    pub dgrams: Vec<(SocketAddrV4, Vec<u8>)>,
    pub seq: Vec<SequencerInput>,
    pub dir: Vec<ToDirectory>,
    pub app: Vec<(SessionId, FromDaemon)>,
    pub close: Vec<SessionId>,
}

impl Outbox {
    /// True when the drain produced nothing.
    pub fn is_empty(&self) -> bool {
        self.mcast.is_empty()
            && self.dgrams.is_empty()
            && self.seq.is_empty()
            && self.dir.is_empty()
            && self.app.is_empty()
            && self.close.is_empty()
    }
}

impl HostSink for Outbox {
    fn multicast(&mut self, change: MulticastChange) {
        self.mcast.push(change);
    }
    fn transmit(&mut self, dest: SocketAddrV4, bytes: &[u8]) {
        self.dgrams.push((dest, bytes.to_vec()));
    }
    fn sequencer(&mut self, input: SequencerInput) {
        self.seq.push(input);
    }
    fn directory(&mut self, frame: ToDirectory) {
        self.dir.push(frame);
    }
    fn app(&mut self, session: SessionId, event: FromDaemon) {
        self.app.push((session, event));
    }
    fn close_session(&mut self, session: SessionId) {
        self.close.push(session);
    }
}

/// One simulated daemon.
#[derive(Debug)]
pub struct Node {
    pub idx: usize,
    pub params: HostParams,
    pub host: Host,
    /// Created at each Welcome, like chorusd's sequencer thread.
    pub seq: Option<Sequencer>,
    /// False while crashed.
    pub alive: bool,
    pub incarnation: u64,
    /// The directory connection in use.
    pub conn: Option<ConnId>,
    /// The directory heartbeat schedule, as chorusd keeps it.
    pub driver: NodeDriver,
    /// Frames on the directory link leave in order: never before this.
    pub dir_up_at: u64,
    pub dir_down_at: u64,
    /// Inputs to the sequencer arrive in order: never before this.
    pub seq_chan_at: u64,
    /// The data socket's seal (chorusd's IO thread): every datagram the
    /// host sends is sealed with it, every one it receives opened.
    pub seal: DatagramSeal,
    /// The sequencer socket's seal (chorusd's sequencer thread).
    pub seq_seal: DatagramSeal,
    buf: Vec<u8>,
}

/// The simulated cluster's key: every host holds it, as every chorusd of a
/// cluster does.
const SIM_KEY: [u8; KEY_BYTES] = [0x5c; KEY_BYTES];

/// The cluster key ring of every simulated host.
pub fn sim_keys() -> KeyRing {
    KeyRing::new(ClusterKey::from_bytes(&SIM_KEY), Vec::new())
}

/// A session salt unique to node `idx`'s life `incarnation` and socket
/// (`which`): chorusd draws one at random per thread and life; the
/// simulator derives one, so that seeds stay reproducible and draw nothing
/// more from the run's random stream.
fn salt(idx: usize, incarnation: u64, which: u8) -> SessionSalt {
    let mut s = [0u8; 16];
    s[0] = which;
    s[1..5].copy_from_slice(&(idx as u32).to_be_bytes());
    s[8..].copy_from_slice(&incarnation.to_be_bytes());
    SessionSalt(s)
}

/// The simulated `now` as the core's instant.
pub fn instant(micros: u64) -> Instant {
    Instant::from_micros(micros)
}

impl Node {
    /// A fresh daemon (not yet connected to the directory).
    pub fn new(
        idx: usize,
        params: HostParams,
        incarnation: u64,
        planted: crate::plan::Planted,
    ) -> Node {
        let mut host = Host::new(settings(idx, &params, incarnation));
        crate::planted::apply(&mut host, planted);
        let mut seal = DatagramSeal::new(&sim_keys(), salt(idx, incarnation, 0));
        let mut seq_seal = DatagramSeal::new(&sim_keys(), salt(idx, incarnation, 1));
        if planted.no_replay_window {
            seal.plant_no_replay_window();
            seq_seal.plant_no_replay_window();
        }
        Node {
            idx,
            params,
            host,
            seq: None,
            alive: true,
            incarnation,
            conn: None,
            driver: NodeDriver::new(),
            dir_up_at: 0,
            dir_down_at: 0,
            seq_chan_at: 0,
            seal,
            seq_seal,
            buf: Vec::with_capacity(2048),
        }
    }

    /// Drains the host's outputs in the documented order.
    pub fn drain(&mut self, now: u64, out: &mut Outbox) {
        drive::drain(&mut self.host, instant(now), &mut self.buf, out);
    }

    /// The sequencer chorusd starts when the directory welcomes it, with
    /// the settings [`NodeDriver::on_directory_frame`] gave.
    pub fn start_sequencer(&mut self, settings: SequencerSettings) {
        // As chorusd does: a node welcomed again under the same identity
        // keeps its sequencer's state.
        match self.seq.as_mut() {
            Some(q) => {
                q.reconfigure(settings);
            }
            None => self.seq = Some(Sequencer::new(settings)),
        }
    }

    /// Takes the sequencer's next datagram, if any.
    pub fn poll_sequencer_transmit(&mut self, buf: &mut Vec<u8>) -> Option<SocketAddrV4> {
        self.seq.as_mut()?.poll_transmit(buf)
    }

    /// The earliest of the node's timers.
    pub fn wake(&self) -> Option<u64> {
        if !self.alive {
            return None;
        }
        [
            self.host.poll_timeout(),
            self.seq.as_ref().and_then(Sequencer::poll_timeout),
            self.driver.poll_timeout(),
        ]
        .into_iter()
        .flatten()
        .min()
        .map(Instant::as_micros)
    }
}

fn settings(idx: usize, p: &HostParams, incarnation: u64) -> HostSettings {
    HostSettings {
        node_name: format!("h{idx}"),
        incarnation: Incarnation(incarnation),
        ip: node_ip(idx),
        data_port: DATA_PORT,
        order_port: ORDER_PORT,
        // As chorusd in a keyed cluster: the seal's header and tag fit in.
        max_datagram_bytes: p.max_datagram_bytes - SEAL_OVERHEAD_BYTES,
        // Messages of up to a few datagrams' pieces.
        max_message_bytes: 16 * p.max_datagram_bytes,
        send_window_messages: p.send_window_messages,
        receive_window_messages: p.receive_window_messages,
        ack_interval: Duration::from_millis(p.ack_interval_ms),
        retransmit: Duration::from_millis(p.retransmit_ms),
        // Small enough that flow control binds in the simulator too.
        flow_budget_bytes: 32 * p.max_datagram_bytes,
        directory_label: "sim".to_owned(),
        version: "sim".to_owned(),
    }
}
