//! The IO thread: one mio loop owning the [`Host`] state machine and every
//! socket but the sequencer's. It follows the host's documented call order:
//! feed inputs as they come, then drain outputs once per wake, so a burst of
//! app sends leaves as a few full datagrams.
//!
//! The directory heartbeat never waits behind that work: a due heartbeat is
//! written to the directory's socket as soon as the loop wakes and again
//! between every batch of input it handles (one socket's datagrams, one
//! session's frames, one accepted connection), so a busy node's lease is
//! renewed on time however much input is queued. Only a loop that stalls
//! within one batch, or is not scheduled at all, is late.

use crate::directory_link::{DirectoryLink, LinkState};
use crate::sequencer_thread::{SequencerThread, ToSequencer};
use crate::session::{peer_credentials, AppConn};
use crate::sockets;
use chorus_proto::host::drive::{self, HostSink};
use chorus_proto::host::{Host, MulticastChange, SessionId};
use chorus_proto::node::NodeDriver;
use chorus_proto::order::sequencer::SequencerInput;
use chorus_proto::wire::app::{FromDaemon, ToDaemon};
use chorus_proto::wire::directory::FromDirectory;
use chorus_proto::wire::directory::ToDirectory;
use chorus_proto::wire::frame::write_frame;
use chorus_proto::wire::seal::{DatagramSeal, KeyRing, SessionSalt};
use chorus_proto::Instant as CoreInstant;
use mio::net::{UdpSocket, UnixListener};
use mio::{Events, Interest, Poll, Token};
use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM};
use signal_hook_mio::v1_0::Signals;
use std::collections::{BTreeMap, BTreeSet};
use std::io;
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};
use std::time::{Duration, Instant};

/// Longest sleep of the loop (see `next_timeout`).
const WAKE_AT_LEAST_EVERY: Duration = Duration::from_millis(100);
const LISTENER: Token = Token(0);
const DATA: Token = Token(1);
const DIRECTORY: Token = Token(2);
const SIGNALS: Token = Token(3);
const MCAST_BASE: usize = 1 << 20;
const SESSION_BASE: usize = 1 << 32;
/// Datagrams read from one socket per wake before others get a turn.
const DATAGRAM_BUDGET: usize = 512;
/// Read calls per session per wake.
const SESSION_READ_BUDGET: usize = 16;
/// How long SIGTERM waits for accepted messages to become stable.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(3);

/// Where the loop reads the time: the system clock, or a test's.
pub type Clock = Box<dyn Fn() -> Instant>;

/// Everything the IO loop needs that does not come from the host.
#[derive(Debug)]
pub struct EdgeSettings {
    pub interface: Ipv4Addr,
    pub session_queue_bytes: usize,
}

/// The daemon's IO side.
pub struct Daemon {
    /// Seals what this thread sends and opens what it receives, when the
    /// cluster has a key.
    seal: Option<DatagramSeal>,
    poll: Poll,
    host: Host,
    epoch: Instant,
    clock: Clock,
    edge: EdgeSettings,
    listener: UnixListener,
    data: UdpSocket,
    mcast: BTreeMap<SocketAddrV4, (Token, UdpSocket)>,
    mcast_tokens: BTreeMap<Token, SocketAddrV4>,
    next_mcast: usize,
    sessions: BTreeMap<u64, AppConn>,
    next_session: u64,
    link: DirectoryLink,
    sequencer: SequencerThread,
    signals: Signals,
    /// The directory heartbeat schedule, as the simulator keeps it.
    driver: NodeDriver,
    /// The longest a heartbeat waited past its time, logged at exit.
    heartbeat_late_max: Duration,
    ready_sent: bool,
    readable: BTreeSet<Token>,
    blocked: BTreeSet<u64>,
    shutdown_by: Option<Instant>,
    buf: Vec<u8>,
    on_ready: Option<Box<dyn FnOnce()>>,
    /// What SIGHUP runs (re-reading the configuration); it returns the
    /// keys to use from now on when they changed.
    on_reload: Option<Box<dyn FnMut() -> Option<KeyRing>>>,
}

impl std::fmt::Debug for Daemon {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Daemon")
            .field("sessions", &self.sessions.len())
            .finish()
    }
}

impl Daemon {
    /// Wires the sockets to a poll. The data and order sockets are bound by
    /// the caller (their ports are part of the host's settings).
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        host: Host,
        epoch: Instant,
        edge: EdgeSettings,
        listener: std::os::unix::net::UnixListener,
        data: std::net::UdpSocket,
        order: std::net::UdpSocket,
        directories: Vec<SocketAddr>,
        keys: Option<KeyRing>,
    ) -> io::Result<Daemon> {
        let poll = Poll::new()?;
        listener.set_nonblocking(true)?;
        let mut listener = UnixListener::from_std(listener);
        poll.registry()
            .register(&mut listener, LISTENER, Interest::READABLE)?;
        let mut data = UdpSocket::from_std(data);
        poll.registry()
            .register(&mut data, DATA, Interest::READABLE)?;
        // SIGHUP too: its default action would end the daemon without
        // leaving its groups.
        let mut signals = Signals::new([SIGTERM, SIGINT, SIGHUP])?;
        poll.registry()
            .register(&mut signals, SIGNALS, Interest::READABLE)?;
        let sequencer = SequencerThread::spawn(order, epoch, keys.clone())?;
        Ok(Daemon {
            seal: keys.as_ref().map(new_seal).transpose()?,
            poll,
            host,
            epoch,
            clock: Box::new(Instant::now),
            edge,
            listener,
            data,
            mcast: BTreeMap::new(),
            mcast_tokens: BTreeMap::new(),
            next_mcast: MCAST_BASE,
            sessions: BTreeMap::new(),
            next_session: 1,
            link: DirectoryLink::new(directories, DIRECTORY, Instant::now(), keys),
            sequencer,
            signals,
            driver: NodeDriver::new(),
            heartbeat_late_max: Duration::ZERO,
            ready_sent: false,
            readable: BTreeSet::new(),
            blocked: BTreeSet::new(),
            shutdown_by: None,
            buf: Vec::with_capacity(65536),
            on_ready: None,
            on_reload: None,
        })
    }

    /// Runs `f` once the daemon serves (registered with the directory), when
    /// it also tells systemd READY=1.
    pub fn on_ready(&mut self, f: Box<dyn FnOnce()>) {
        self.on_ready = Some(f);
    }

    /// Runs `f` at every SIGHUP (re-reading the configuration); keys it
    /// returns are taken at once ([`Daemon::rekey`]). Without it SIGHUP is
    /// logged and otherwise ignored.
    pub fn on_reload(&mut self, f: Box<dyn FnMut() -> Option<KeyRing>>) {
        self.on_reload = Some(f);
    }

    /// Seals and opens with `keys` from now on, on every socket and the
    /// directory link: a step of a key rotation, read on SIGHUP. Datagrams
    /// sealed under a key still held keep opening; a key no longer held
    /// opens nothing more, and a directory link under it is set up again.
    pub fn rekey(&mut self, keys: KeyRing) {
        let Some(seal) = self.seal.as_mut() else {
            log::warn!("keys given to a daemon running without a key: a restart takes them");
            return;
        };
        if let Err(e) = rekey_seal(seal, &keys) {
            log::error!("the new keys are not taken: {e}; the running keys stay");
            return;
        }
        self.sequencer.send(ToSequencer::Rekey(keys.clone()));
        let now = self.now();
        if self.link.set_keys(self.poll.registry(), now, keys) {
            let cnow = self.core_at(now);
            self.host.handle_directory_lost(cnow);
            self.driver.on_directory_lost(cnow);
        }
    }

    /// Reads the time from `clock` from now on (tests).
    #[cfg(test)]
    fn set_clock(&mut self, clock: Clock) {
        self.clock = clock;
    }

    fn now(&self) -> Instant {
        (self.clock)()
    }

    fn core_now(&self) -> CoreInstant {
        self.core_at(self.now())
    }

    fn core_at(&self, t: Instant) -> CoreInstant {
        CoreInstant::from_micros(t.saturating_duration_since(self.epoch).as_micros() as u64)
    }

    fn to_std(&self, t: CoreInstant) -> Instant {
        self.epoch + Duration::from_micros(t.as_micros())
    }

    /// Serves until SIGTERM/SIGINT; then drains and leaves cleanly.
    pub fn run(&mut self) -> io::Result<()> {
        let mut events = Events::with_capacity(1024);
        loop {
            let timeout = self.next_timeout();
            self.turn(&mut events, timeout)?;
            if self.finish_shutdown()? {
                return Ok(());
            }
        }
    }

    /// One turn of the loop: wait for readiness (at most `timeout`), then
    /// handle it. A due heartbeat goes out first, whatever woke us.
    fn turn(&mut self, events: &mut Events, timeout: Option<Duration>) -> io::Result<()> {
        if let Err(e) = self.poll.poll(events, timeout) {
            if e.kind() != io::ErrorKind::Interrupted {
                return Err(e);
            }
        }
        // Before anything that arrived meanwhile: a loop that did not run
        // for about a lease (SIGSTOP, starved) may have been declared dead,
        // and must not deliver as if it had not (see `Host::handle_lease_lapsed`).
        let now = self.now();
        self.driver.on_wake(self.core_at(now));
        self.check_lapse(now);
        self.beat();
        let (unauthentic, replayed) = self.sequencer.take_refusals();
        if unauthentic + replayed > 0 {
            self.host.note_refused_elsewhere(unauthentic, replayed);
        }
        for ev in events.iter() {
            self.on_event(ev.token(), ev.is_writable());
        }
        self.service();
        Ok(())
    }

    /// Sends the directory heartbeat if it is due, straight to the socket
    /// (not after the turn's datagrams and replies): called between batches
    /// of input, it keeps a busy node's lease renewed.
    fn beat(&mut self) {
        if self.link.state() != LinkState::Up {
            return;
        }
        let now = self.now();
        let Some(frame) = self.driver.poll_heartbeat(self.core_at(now)) else {
            return;
        };
        let late = self.driver.last_lateness();
        self.heartbeat_late_max = self
            .heartbeat_late_max
            .max(Duration::from_micros(late.as_micros()));
        if let Some(every) = self.driver.interval().filter(|every| late >= *every) {
            log::warn!(
                "directory heartbeat sent {} ms late (one is due every {} ms; the directory \
                 declares a node dead after four missed): this loop was stalled or not scheduled",
                late.as_millis(),
                every.as_millis()
            );
        }
        self.link.send(&frame);
        self.flush_link(now);
        self.check_lapse(now);
    }

    /// Tells the host if the driver found this node silent towards the
    /// directory for about its lease.
    fn check_lapse(&mut self, now: Instant) {
        if let Some(silent) = self.driver.take_lapse() {
            self.host.handle_lease_lapsed(self.core_at(now), silent);
        }
    }

    /// Writes what the directory link has queued; a link found lost is
    /// reported to the host and stops the heartbeats.
    fn flush_link(&mut self, now: Instant) {
        if self.link.flush(self.poll.registry(), now) {
            let cnow = self.core_at(now);
            self.host.handle_directory_lost(cnow);
            self.driver.on_directory_lost(cnow);
        }
    }

    fn next_timeout(&self) -> Option<Duration> {
        if !self.readable.is_empty() {
            return Some(Duration::ZERO);
        }
        let now = self.now();
        let mut t: Option<Instant> = self.host.poll_timeout().map(|c| self.to_std(c));
        let heartbeat = self.driver.poll_timeout().map(|c| self.to_std(c));
        for d in [self.link.deadline(), heartbeat] {
            t = match (t, d) {
                (Some(a), Some(b)) => Some(a.min(b)),
                (a, b) => a.or(b),
            };
        }
        if self.shutdown_by.is_some() {
            t = Some(t.map_or(now + Duration::from_millis(20), |x| {
                x.min(now + Duration::from_millis(20))
            }));
        }
        // Wake at least this often, so that a stall of the process shows
        // as a gap between turns (`NodeDriver::on_wake`).
        t = Some(t.map_or(now + WAKE_AT_LEAST_EVERY, |x| {
            x.min(now + WAKE_AT_LEAST_EVERY)
        }));
        t.map(|t| t.saturating_duration_since(now))
    }

    fn on_event(&mut self, token: Token, writable: bool) {
        match token {
            LISTENER => self.accept(),
            DATA => {
                self.readable.insert(DATA);
            }
            DIRECTORY => self.on_directory_ready(),
            SIGNALS => self.on_signals(),
            t if t.0 >= SESSION_BASE => {
                let id = (t.0 - SESSION_BASE) as u64;
                self.readable.insert(t);
                if writable {
                    if let Some(c) = self.sessions.get_mut(&id) {
                        if let Err(e) = c.write_out() {
                            log::info!("app session {id}: write: {e}");
                            self.close_session(id);
                        }
                    }
                }
            }
            t => {
                self.readable.insert(t);
            }
        }
    }

    fn on_signals(&mut self) {
        let pending: Vec<i32> = self.signals.pending().collect();
        for sig in pending {
            if sig == SIGHUP {
                let keys = match self.on_reload.as_mut() {
                    Some(reload) => reload(),
                    None => {
                        log::info!("SIGHUP: no configuration file to re-read");
                        None
                    }
                };
                if let Some(keys) = keys {
                    self.rekey(keys);
                }
                // Re-reading the file may have taken a while.
                self.beat();
                continue;
            }
            if self.shutdown_by.is_none() {
                log::info!("signal {sig}: leaving every group and stopping");
                self.shutdown_by = Some(self.now() + DRAIN_TIMEOUT);
                let _ = self.poll.registry().deregister(&mut self.listener);
            }
        }
    }

    fn finish_shutdown(&mut self) -> io::Result<bool> {
        let Some(by) = self.shutdown_by else {
            return Ok(false);
        };
        if !self.host.is_drained() && self.now() < by {
            return Ok(false);
        }
        if !self.host.is_drained() {
            log::warn!("stopping with messages not yet stable at every member");
        }
        log::info!(
            "stopping; counters: {:?}; longest heartbeat delay: {} ms",
            self.host.stats(),
            self.heartbeat_late_max.as_millis()
        );
        let now = self.core_now();
        self.host.shutdown(now);
        self.drain_outputs();
        let now = self.now();
        let _ = self.link.flush(self.poll.registry(), now);
        Ok(true)
    }

    fn accept(&mut self) {
        loop {
            match self.listener.accept() {
                Ok((mut stream, _)) => {
                    let id = self.next_session;
                    self.next_session += 1;
                    let token = Token(SESSION_BASE + id as usize);
                    if let Err(e) = self.poll.registry().register(
                        &mut stream,
                        token,
                        Interest::READABLE | Interest::WRITABLE,
                    ) {
                        log::warn!("app session: register: {e}");
                        continue;
                    }
                    let (creds, pid) = peer_credentials(&stream);
                    log::debug!(
                        "app session {id}: connected (user {}, pid {pid:?})",
                        creds.user
                    );
                    let now = self.core_now();
                    self.host.handle_app_connect(now, SessionId(id), creds);
                    self.sessions.insert(id, AppConn::new(stream, pid));
                    self.readable.insert(token);
                    // The credentials lookup may have been slow (NSS).
                    self.beat();
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) => {
                    log::warn!("accept: {e}");
                    break;
                }
            }
        }
    }

    fn on_directory_ready(&mut self) {
        let now = self.now();
        let ev = self.link.on_ready(self.poll.registry(), now);
        let cnow = self.core_at(now);
        if ev.connected {
            if let Some(addr) = self.link.current {
                self.host.note_directory_in_use(addr.to_string());
            }
            self.driver.on_directory_connected(cnow);
            self.host.handle_directory_connected(cnow);
        }
        for frame in ev.frames {
            if let Some(to) = self.must_leave_link(&frame) {
                self.link.leave(self.poll.registry(), now, to);
                self.host.handle_directory_lost(cnow);
                self.driver.on_directory_lost(cnow);
                self.check_lapse(now);
                return;
            }
            self.on_directory_frame(cnow, frame);
        }
        if ev.lost {
            self.host.handle_directory_lost(cnow);
            self.driver.on_directory_lost(cnow);
            self.check_lapse(now);
        }
    }

    /// Whether this frame means the link is with the wrong directory
    /// replica: a Redirect (to the leader it names, if any), or a Welcome
    /// under an epoch older than one this daemon was welcomed in (a deposed
    /// leader that has not noticed yet: nothing it says may be taken).
    fn must_leave_link(&self, frame: &FromDirectory) -> Option<Option<SocketAddr>> {
        match frame {
            FromDirectory::Redirect { leader } => {
                log::info!(
                    "directory {:?} does not lead; {}",
                    self.link.current,
                    leader.map_or("no leader known: trying the next one".to_owned(), |l| {
                        format!("connecting to the leader at {l}")
                    })
                );
                Some(*leader)
            }
            FromDirectory::Welcome { epoch, .. } if *epoch < self.host.directory_epoch() => {
                log::warn!(
                    "directory {:?} welcomed this node under epoch {epoch}, older than epoch {}: \
                     a deposed leader; trying another",
                    self.link.current,
                    self.host.directory_epoch()
                );
                Some(None)
            }
            _ => None,
        }
    }

    fn on_directory_frame(&mut self, cnow: CoreInstant, frame: FromDirectory) {
        if let Some(settings) = self
            .driver
            .on_directory_frame(cnow, self.host.settings(), &frame)
        {
            self.sequencer.send(ToSequencer::Configure(settings));
        }
        if let FromDirectory::Welcome { lease_ms, .. } = frame {
            let lease = Duration::from_millis(u64::from(lease_ms));
            self.link.note_welcomed(self.now(), lease);
        }
        let welcomed = matches!(frame, FromDirectory::Welcome { .. });
        self.host.handle_directory(cnow, frame);
        if welcomed && !self.ready_sent {
            self.ready_sent = true;
            crate::notify::notify("READY=1");
            if let Some(f) = self.on_ready.take() {
                f();
            }
        }
    }

    /// One pass over everything that may have work: sockets, sessions,
    /// timers; then the outputs. The heartbeat is looked at before and
    /// after each batch of input.
    fn service(&mut self) {
        let tokens: Vec<Token> = std::mem::take(&mut self.readable).into_iter().collect();
        for t in tokens {
            self.beat();
            if t.0 >= SESSION_BASE {
                self.read_session((t.0 - SESSION_BASE) as u64);
            } else {
                self.read_datagrams(t);
            }
        }
        let blocked: Vec<u64> = self.blocked.iter().copied().collect();
        for id in blocked {
            if self.host.can_accept(SessionId(id)) {
                self.beat();
                self.read_session(id);
            }
        }
        self.beat();
        let now = self.now();
        self.link.maybe_connect(self.poll.registry(), now);
        let cnow = self.core_at(now);
        if self.host.poll_timeout().is_some_and(|t| t <= cnow) {
            self.host.handle_timeout(cnow);
        }
        self.drain_outputs();
    }

    fn read_datagrams(&mut self, token: Token) {
        let now = self.core_now();
        let mut buf = std::mem::take(&mut self.buf);
        buf.resize(65536, 0);
        let socket = if token == DATA {
            Some(&self.data)
        } else {
            self.mcast_tokens
                .get(&token)
                .and_then(|a| self.mcast.get(a))
                .map(|(_, s)| s)
        };
        let Some(socket) = socket else {
            self.buf = buf;
            return;
        };
        let mut exhausted = true;
        let mut got: Vec<(SocketAddrV4, Vec<u8>)> = Vec::new();
        // Opened after the reads, as the host handles them.
        for _ in 0..DATAGRAM_BUDGET {
            match socket.recv_from(&mut buf) {
                Ok((n, SocketAddr::V4(from))) => got.push((from, buf[..n].to_vec())),
                Ok(_) => {}
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    exhausted = false;
                    break;
                }
                Err(e) => {
                    log::debug!("recv: {e}");
                    exhausted = false;
                    break;
                }
            }
        }
        for (from, mut bytes) in got {
            match self.seal.as_mut() {
                None => self.host.handle_datagram(now, from, &bytes),
                Some(seal) => match seal.open(&mut bytes) {
                    Ok(inner) => self.host.handle_datagram(now, from, inner),
                    Err(why) => self.host.note_refused(from, &why),
                },
            }
        }
        if exhausted {
            self.readable.insert(token);
        }
        self.buf = buf;
    }

    fn read_session(&mut self, id: u64) {
        let Some(conn) = self.sessions.get_mut(&id) else {
            return;
        };
        let more = if self.host.can_accept(SessionId(id)) {
            match conn.read_some(SESSION_READ_BUDGET) {
                Ok(more) => more,
                Err(e) => {
                    log::info!("app session {id}: read: {e}");
                    self.close_session(id);
                    return;
                }
            }
        } else {
            false
        };
        if more {
            self.readable.insert(Token(SESSION_BASE + id as usize));
        }
        self.process_frames(id);
    }

    fn process_frames(&mut self, id: u64) {
        let now = self.core_now();
        let sid = SessionId(id);
        let Some(conn) = self.sessions.get_mut(&id) else {
            return;
        };
        loop {
            if !self.host.can_accept(sid) {
                self.blocked.insert(id);
                return;
            }
            match conn.frames.next_frame() {
                Ok(Some(body)) => match ToDaemon::decode(body) {
                    Ok(req) => self.host.handle_app(now, sid, req),
                    Err(e) => {
                        log::warn!(
                            "app session {id} (pid {:?}): bad frame: {e}; disconnecting it",
                            conn.pid
                        );
                        self.close_session(id);
                        return;
                    }
                },
                Ok(None) => break,
                Err(e) => {
                    log::warn!(
                        "app session {id} (pid {:?}): {e}; disconnecting it",
                        conn.pid
                    );
                    self.close_session(id);
                    return;
                }
            }
        }
        self.blocked.remove(&id);
        if conn.eof {
            if conn.frames.pending_bytes() > 0 {
                log::warn!("app session {id}: disconnected in the middle of a frame");
            }
            self.close_session(id);
        }
    }

    fn close_session(&mut self, id: u64) {
        if let Some(mut c) = self.sessions.remove(&id) {
            let _ = self.poll.registry().deregister(&mut c.stream);
            log::debug!("app session {id}: closed");
        }
        self.blocked.remove(&id);
        let now = self.core_now();
        self.host.handle_app_disconnect(now, SessionId(id));
    }

    /// Drains the host's outputs in its documented order ([`drive::drain`]).
    fn drain_outputs(&mut self) {
        let now = self.core_now();
        let mut buf = std::mem::take(&mut self.buf);
        let mut sink = Outputs {
            seal: self.seal.as_mut(),
            changes: Vec::new(),
            data: &self.data,
            sequencer: &self.sequencer,
            link: &mut self.link,
            sessions: &mut self.sessions,
            touched: BTreeSet::new(),
            close: Vec::new(),
        };
        drive::drain(&mut self.host, now, &mut buf, &mut sink);
        let Outputs {
            changes,
            touched,
            close,
            ..
        } = sink;
        self.buf = buf;
        for c in changes {
            self.apply_multicast(c);
        }
        let now = self.now();
        self.flush_link(now);
        for id in close {
            self.close_session(id);
        }
        self.flush_sessions(touched);
    }

    fn flush_sessions(&mut self, touched: BTreeSet<u64>) {
        for id in touched {
            let Some(c) = self.sessions.get_mut(&id) else {
                continue;
            };
            if let Err(e) = c.write_out() {
                log::info!("app session {id}: write: {e}");
                self.close_session(id);
                continue;
            }
            if c.pending_out() > self.edge.session_queue_bytes {
                log::warn!(
                    "app session {id} (pid {:?}) is not reading: {} bytes undelivered exceed session_queue_bytes; disconnecting it",
                    c.pid,
                    c.pending_out()
                );
                self.host.note_session_dropped_slow();
                self.close_session(id);
            }
        }
    }

    fn apply_multicast(&mut self, c: MulticastChange) {
        match c {
            MulticastChange::Join(addr) => {
                if self.mcast.contains_key(&addr) {
                    return;
                }
                match sockets::multicast_socket(addr, self.edge.interface) {
                    Ok(s) => {
                        let mut s = UdpSocket::from_std(s);
                        let token = Token(self.next_mcast);
                        self.next_mcast += 1;
                        if let Err(e) =
                            self.poll
                                .registry()
                                .register(&mut s, token, Interest::READABLE)
                        {
                            log::error!("multicast {addr}: register: {e}");
                            return;
                        }
                        log::info!("joined multicast {addr} on {}", self.edge.interface);
                        self.mcast_tokens.insert(token, addr);
                        self.mcast.insert(addr, (token, s));
                        self.readable.insert(token);
                    }
                    Err(e) => log::error!(
                        "cannot join multicast {addr} on {}: {e}",
                        self.edge.interface
                    ),
                }
            }
            MulticastChange::Leave(addr) => {
                if let Some((token, mut s)) = self.mcast.remove(&addr) {
                    let _ = self.poll.registry().deregister(&mut s);
                    self.mcast_tokens.remove(&token);
                    log::info!("left multicast {addr}");
                }
            }
        }
    }
}

/// The daemon's side of [`HostSink`]: datagrams go straight out, frames
/// into the link's and sessions' buffers; socket changes wait until the
/// host is released.
struct Outputs<'a> {
    seal: Option<&'a mut DatagramSeal>,
    changes: Vec<MulticastChange>,
    data: &'a UdpSocket,
    sequencer: &'a SequencerThread,
    link: &'a mut DirectoryLink,
    sessions: &'a mut BTreeMap<u64, AppConn>,
    touched: BTreeSet<u64>,
    close: Vec<u64>,
}

impl HostSink for Outputs<'_> {
    fn multicast(&mut self, change: MulticastChange) {
        self.changes.push(change);
    }

    fn transmit(&mut self, dest: SocketAddrV4, bytes: &[u8]) {
        let bytes = match self.seal.as_mut() {
            None => bytes,
            Some(s) => s.seal(bytes),
        };
        if let Err(e) = self.data.send_to(bytes, dest.into()) {
            // A datagram lost here is repaired like one lost on the wire.
            log::debug!("send to {dest}: {e}");
        }
    }

    fn sequencer(&mut self, input: SequencerInput) {
        self.sequencer.send(ToSequencer::Input(input));
    }

    fn directory(&mut self, frame: ToDirectory) {
        self.link.send(&frame);
    }

    fn app(&mut self, session: SessionId, event: FromDaemon) {
        if let Some(c) = self.sessions.get_mut(&session.0) {
            write_frame(&mut c.out, |b| event.encode(b));
            self.touched.insert(session.0);
        }
    }

    fn close_session(&mut self, session: SessionId) {
        self.close.push(session.0);
    }
}

#[cfg(test)]
mod tests;

/// A thread's sealing state in a keyed cluster: a new session under
/// `keys`' current key, its salt from the system's random source.
pub fn new_seal(keys: &KeyRing) -> io::Result<DatagramSeal> {
    Ok(DatagramSeal::new(keys, fresh_salt()?))
}

/// Takes `keys` (a rotation step read on SIGHUP) into `seal`; on error (no
/// random salt) the seal is as it was.
pub fn rekey_seal(seal: &mut DatagramSeal, keys: &KeyRing) -> io::Result<()> {
    seal.rekey(keys, fresh_salt()?);
    Ok(())
}

/// A session salt from the system's random source.
pub fn fresh_salt() -> io::Result<SessionSalt> {
    let mut salt = [0u8; 16];
    ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut salt)
        .map_err(|_| io::Error::other("the system random source failed"))?;
    Ok(SessionSalt(salt))
}
