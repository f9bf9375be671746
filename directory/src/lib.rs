//! chorus-directory: the membership server daemons connect to.
//!
//! [`Server`] is a single-threaded mio loop around the sans-IO
//! [`chorus_proto::directory::Directory`]: it accepts TCP connections, cuts
//! the byte streams into frames, feeds them to the core with the time, and
//! writes back what the core produces. The binary `chorus-directory` runs it
//! with a configuration file and signals; `chorusd --dev` runs it in-process
//! through [`Server::spawn`].
//!
//! After every batch of inputs the loop drains the core's output frames into
//! per-connection buffers and writes them, then closes what the core asked to
//! close (after its output is flushed), then sleeps until the core's next
//! deadline (at most [`TICK`]). When a lease is due it first reads the
//! node's link: a heartbeat that arrived while the loop was busy with other
//! connections (or not scheduled) renews the lease rather than being read
//! after the node was declared dead.
//!
//! With `[[peer]]` in its configuration the server is one replica of a
//! replicated directory ([`replica`]): it serves daemons only while Raft
//! says it leads with a majority behind it, each leadership under a new
//! epoch with a fresh core (in its grace period, as after a restart), and
//! answers every other connection with a Redirect to the leader.
//!
//! With a cluster key (`Server.keys`) every connection starts with the
//! handshake of [`chorus_proto::wire::seal::stream`]: the server answers a
//! hello under a key it holds with its nonce and nothing else, and tells
//! the core of the connection (or redirects it) only once the first sealed
//! frame from the peer opened, so a process without the key cannot
//! register, claim a user, evict a node by its name or read a view. A
//! connection that has not proven itself within [`HANDSHAKE_TIMEOUT`] is
//! closed.
#![forbid(unsafe_code)]

mod conn;
pub mod replica;

pub use conn::OUTPUT_BUFFER_MAX_BYTES;

use chorus_config::DirectoryConfig;
use chorus_proto::directory::{
    ConnId, Directory, DirectorySettings, DynamicDecl, GroupDecl, IdFloors,
};
use chorus_proto::wire::directory::FromDirectory;
use chorus_proto::wire::seal::stream::StreamError;
use chorus_proto::wire::seal::KeyRing;
use chorus_proto::{cluster_id_from_name, Duration, Epoch, Instant};
use conn::{Connection, Inbound, LinkError, ReadOutcome};
use mio::net::{TcpListener, TcpStream};
use mio::{Events, Interest, Poll, Token, Waker};
use std::collections::{BTreeMap, BTreeSet};
use std::io;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;

/// Longest sleep of the loop: how often stop and reload flags set from
/// signal handlers are looked at.
pub const TICK: std::time::Duration = std::time::Duration::from_millis(100);
/// Most connections served at once; more are accepted and closed at once.
pub const CONNECTIONS_MAX: usize = 4096;
/// Most addresses of the dynamic pool handed to the core (a /8 pool holds
/// 16 million; far more than groups the directory would ever hold).
pub const DYNAMIC_ADDRESSES_MAX: usize = 1 << 16;
/// Bytes read from one connection per wake before others get their turn.
const READ_BUDGET_BYTES: usize = 1 << 20;
/// Connections accepted per wake before others get their turn.
const ACCEPT_BUDGET: usize = 256;
/// How long a connection the core closed may take to flush its last frames.
const CLOSE_LINGER: std::time::Duration = std::time::Duration::from_secs(2);
/// Size of the read buffer.
const READ_CHUNK_BYTES: usize = 64 * 1024;
/// Malformed-input warnings logged per window; the rest are counted.
const WARNS_PER_WINDOW: u32 = 10;
const WARN_WINDOW: std::time::Duration = std::time::Duration::from_secs(10);
/// How long a connection to a keyed directory may take to prove it holds
/// the key (its hello, then its first sealed frame): a process without the
/// key must not hold a connection slot for long.
pub const HANDSHAKE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(5);

const LISTENER: Token = Token(0);
const WAKER: Token = Token(1);
/// Connection ids (and their tokens) start here.
const FIRST_CONN: u64 = 2;

/// Converts the configuration file's view of the directory into the core's.
pub fn settings_from_config(cfg: &DirectoryConfig) -> DirectorySettings {
    DirectorySettings {
        cluster: cluster_id_from_name(&cfg.cluster),
        lease: Duration::from_millis(cfg.lease_ms),
        groups: cfg
            .groups
            .iter()
            .map(|g| GroupDecl {
                name: g.name.clone(),
                address: g.address,
                port: g.port,
                max_members: g.max_members,
                max_message_bytes: g.max_message_bytes,
                allow_users: g.allow_users.clone(),
                allow_groups: g.allow_groups.clone(),
            })
            .collect(),
        dynamic: cfg.dynamic.as_ref().map(|d| DynamicDecl {
            addresses: d
                .address_pool
                .addresses()
                .take(DYNAMIC_ADDRESSES_MAX)
                .collect(),
            port: d.port,
        }),
    }
}

/// Where to re-read the configuration from when asked (SIGHUP).
#[derive(Debug)]
struct Reload {
    path: PathBuf,
    requested: Arc<AtomicBool>,
}

/// Logs at most [`WARNS_PER_WINDOW`] warnings per window, so that a peer
/// sending garbage cannot flood the log.
#[derive(Debug)]
struct WarnLimiter {
    window_start: std::time::Instant,
    in_window: u32,
    suppressed: u32,
}

impl WarnLimiter {
    fn new() -> Self {
        WarnLimiter {
            window_start: std::time::Instant::now(),
            in_window: 0,
            suppressed: 0,
        }
    }

    /// Whether a warning may be logged now.
    fn allow(&mut self) -> bool {
        if self.window_start.elapsed() >= WARN_WINDOW {
            if self.suppressed > 0 {
                log::warn!("{} similar warnings suppressed", self.suppressed);
            }
            *self = WarnLimiter::new();
        }
        if self.in_window < WARNS_PER_WINDOW {
            self.in_window += 1;
            true
        } else {
            self.suppressed += 1;
            false
        }
    }
}

/// What the key handshake refused, since the start.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RefusedCounts {
    /// Hellos under a key this directory does not hold, plain peers of a
    /// keyed directory, keyed peers of an insecure one, malformed hellos.
    pub handshakes: u64,
    /// Sealed frames that did not open (forged, altered, replayed,
    /// reordered, or the peer lacks the key).
    pub forged: u64,
    /// Connections that did not prove themselves in time.
    pub timed_out: u64,
}

/// The directory's TCP server.
#[derive(Debug)]
pub struct Server {
    /// The cluster key ring; `None` for an insecure cluster.
    keys: Option<KeyRing>,
    /// Draws the handshake's nonces.
    rng: ring::rand::SystemRandom,
    refused: RefusedCounts,
    poll: Poll,
    listener: TcpListener,
    local_addr: SocketAddr,
    waker: Arc<Waker>,
    core: Directory,
    conns: BTreeMap<ConnId, Connection>,
    next_conn: u64,
    /// The core's time origin.
    origin: std::time::Instant,
    reload: Option<Reload>,
    /// Connections whose read budget ran out: read again without an event.
    read_again: BTreeSet<ConnId>,
    /// The accept budget ran out: accept again without an event.
    accept_again: bool,
    /// Accepting failed (e.g. out of descriptors): retry on the next tick
    /// rather than spinning.
    accept_backoff: bool,
    warnings: WarnLimiter,
    scratch: Vec<u8>,
    /// This replica's Raft, when the directory is replicated.
    replica: Option<replica::Replica>,
    /// The epoch this replica serves daemons under, if it does (always
    /// `Some(Epoch(0))` for a single directory).
    serving: Option<Epoch>,
    /// The settings a new core starts from (a new epoch, a reload).
    settings: DirectorySettings,
    /// The highest ids this leader has asked Raft to record.
    ids_recorded: IdFloors,
    /// The replication keys the server started with (a reload cannot
    /// change them).
    replication: Option<chorus_config::ReplicationConfig>,
}

/// A server running on its own thread. Dropping it stops the server too.
#[derive(Debug)]
pub struct ServerHandle {
    stop: Arc<AtomicBool>,
    waker: Arc<Waker>,
    local_addr: SocketAddr,
    thread: Option<JoinHandle<io::Result<()>>>,
}

impl ServerHandle {
    /// The address the server listens on.
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// Stops the server and waits for its thread; returns how it ended.
    pub fn stop(mut self) -> io::Result<()> {
        self.stop_and_join()
    }

    fn stop_and_join(&mut self) -> io::Result<()> {
        self.stop.store(true, Ordering::SeqCst);
        // If waking fails the loop still sees the flag within one TICK.
        let _ = self.waker.wake();
        match self.thread.take() {
            Some(t) => t
                .join()
                .map_err(|_| io::Error::other("the directory thread panicked"))?,
            None => Ok(()),
        }
    }
}

impl Drop for ServerHandle {
    fn drop(&mut self) {
        if let Err(e) = self.stop_and_join() {
            log::error!("directory server: {e}");
        }
    }
}

impl Server {
    /// Binds `cfg.listen` (port 0 picks a free port) and prepares the core.
    pub fn bind(cfg: &DirectoryConfig) -> io::Result<Server> {
        let poll = Poll::new()?;
        let mut listener = TcpListener::bind(cfg.listen)?;
        let local_addr = listener.local_addr()?;
        poll.registry()
            .register(&mut listener, LISTENER, Interest::READABLE)?;
        let waker = Arc::new(Waker::new(poll.registry(), WAKER)?);
        let settings = settings_from_config(cfg);
        // The key files were checked when the configuration was loaded;
        // read again here, a file gone meanwhile fails the start.
        let keys = cfg
            .trust
            .load(Path::new("directory.toml"))
            .map_err(|e| io::Error::other(e.to_string()))?;
        let replica = match &cfg.replication {
            None => None,
            Some(r) => Some(
                replica::Replica::start(r, settings.cluster.0, Arc::clone(&waker), keys.clone())
                    .map_err(|e| io::Error::other(e.to_string()))?,
            ),
        };
        let serving = replica.is_none().then_some(Epoch(0));
        if keys.is_none() {
            log::warn!("the directory runs without a cluster key (insecure): anyone who can reach {local_addr} is believed");
        }
        Ok(Server {
            keys,
            rng: ring::rand::SystemRandom::new(),
            refused: RefusedCounts::default(),
            poll,
            listener,
            local_addr,
            waker,
            core: Directory::new(settings.clone()),
            settings,
            replica,
            serving,
            ids_recorded: IdFloors::default(),
            replication: cfg.replication.clone(),
            conns: BTreeMap::new(),
            next_conn: FIRST_CONN,
            origin: std::time::Instant::now(),
            reload: None,
            read_again: BTreeSet::new(),
            accept_again: false,
            accept_backoff: false,
            warnings: WarnLimiter::new(),
            scratch: vec![0; READ_CHUNK_BYTES],
        })
    }

    /// A directory that lives and dies with the process that embeds it
    /// (`chorusd --dev`): it cannot have restarted under running groups, so
    /// it skips the grace period and answers every Hello at once.
    pub fn without_grace(mut self) -> Server {
        self.core.skip_grace();
        self
    }

    /// The address the server listens on.
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// What the key handshake refused so far.
    pub fn refused(&self) -> RefusedCounts {
        self.refused
    }

    /// Re-read `path` whenever `requested` is set (by a SIGHUP handler):
    /// a valid file is applied with `Directory::handle_reload`, an invalid
    /// one is logged and the running configuration stays. Changes of
    /// `listen`, `cluster`, `log_level`, `id`, `state_dir` and `[[peer]]` take a
    /// restart.
    pub fn reload_on(mut self, path: PathBuf, requested: Arc<AtomicBool>) -> Server {
        self.reload = Some(Reload { path, requested });
        self
    }

    /// Serves until `stop` is set (looked at least every [`TICK`]).
    pub fn run(mut self, stop: Arc<AtomicBool>) -> io::Result<()> {
        let mut events = Events::with_capacity(1024);
        log::info!("directory listening on {}", self.local_addr);
        while !stop.load(Ordering::SeqCst) {
            self.maybe_reload();
            self.follow_role();
            let timeout = self.next_wait();
            self.turn(&mut events, timeout)?;
        }
        log::info!("directory stopping");
        Ok(())
    }

    /// Waits for readiness (at most `timeout`), handles it, lets time pass.
    fn turn(&mut self, events: &mut Events, timeout: std::time::Duration) -> io::Result<()> {
        match self.poll.poll(events, Some(timeout)) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::Interrupted => return Ok(()),
            Err(e) => return Err(e),
        }
        self.dispatch(events);
        self.after_batch();
        Ok(())
    }

    /// A replica starts or stops serving as Raft says. Either way every
    /// link belongs to the old role and is closed (daemons reconnect, and
    /// are redirected or register again), and a new epoch gets a fresh core
    /// in its grace period: it rebuilds the groups from the daemons'
    /// reports, as a restarted directory does.
    fn follow_role(&mut self) {
        let Some(replica) = &self.replica else {
            return;
        };
        let grant = replica.serving(std::time::Instant::now());
        let serving = grant.map(|g| g.epoch);
        if serving == self.serving {
            return;
        }
        match (self.serving, serving) {
            (_, Some(epoch)) => log::info!(
                "{} leads: serving daemons under epoch {epoch}",
                replica.id()
            ),
            (Some(epoch), None) => log::warn!(
                "{} stops serving daemons (epoch {epoch} ended); closing their links",
                replica.id()
            ),
            (None, None) => {}
        }
        let ids: Vec<ConnId> = self.conns.keys().copied().collect();
        for id in ids {
            self.drop_conn(id, false);
        }
        self.read_again.clear();
        let floors = grant.map(|g| g.floors).unwrap_or_default();
        self.core = Directory::new(self.settings.clone())
            .with_epoch(serving.unwrap_or_default())
            .with_id_floors(floors)
            .with_view_margin(replica::VIEW_MARGIN);
        self.serving = serving;
        self.ids_recorded = IdFloors::default();
        self.record_ids();
    }

    /// A serving leader has Raft record the highest ids it handed out,
    /// whenever they grew (see `replica`: a later leader starts above them).
    fn record_ids(&mut self) {
        let Some(replica) = self.replica.as_ref().filter(|_| self.serving.is_some()) else {
            return;
        };
        let high = self.core.id_high_water();
        if high.exceeds(&self.ids_recorded) {
            replica.record_ids(high);
            self.ids_recorded = high;
        }
    }

    /// Runs the server on a thread of its own.
    pub fn spawn(self) -> io::Result<ServerHandle> {
        let stop = Arc::new(AtomicBool::new(false));
        let waker = Arc::clone(&self.waker);
        let local_addr = self.local_addr;
        let flag = Arc::clone(&stop);
        let thread = std::thread::Builder::new()
            .name("chorus-directory".into())
            .spawn(move || self.run(flag))?;
        Ok(ServerHandle {
            stop,
            waker,
            local_addr,
            thread: Some(thread),
        })
    }

    /// The core's clock: microseconds since the server started.
    fn now(&self) -> Instant {
        Instant::from_micros(u64::try_from(self.origin.elapsed().as_micros()).unwrap_or(u64::MAX))
    }

    /// How long the next poll may sleep.
    fn next_wait(&self) -> std::time::Duration {
        if !self.read_again.is_empty() || (self.accept_again && !self.accept_backoff) {
            return std::time::Duration::ZERO;
        }
        // A serving grant that runs out must be noticed at once.
        if let Some(end) = self.replica.as_ref().and_then(|r| r.grant_ends()) {
            let left = end.saturating_duration_since(std::time::Instant::now());
            if !left.is_zero() && left < TICK {
                return left;
            }
        }
        match self.core.poll_timeout() {
            Some(deadline) => {
                let left = deadline.saturating_since(self.now()).as_micros();
                TICK.min(std::time::Duration::from_micros(left))
            }
            None => TICK,
        }
    }

    fn dispatch(&mut self, events: &Events) {
        for event in events.iter() {
            match event.token() {
                LISTENER => self.accept_again = true,
                WAKER => {}
                Token(t) => {
                    let id = ConnId(t as u64);
                    if event.is_writable() {
                        self.write(id);
                    }
                    if event.is_readable() || event.is_read_closed() || event.is_error() {
                        self.read_again.insert(id);
                    }
                }
            }
        }
        if self.accept_again {
            self.accept();
        }
        let ready = std::mem::take(&mut self.read_again);
        for id in ready {
            self.read(id);
        }
    }

    /// Lets time pass in the core, then hands out its outputs.
    fn after_batch(&mut self) {
        let now = self.now();
        if self.core.poll_timeout().is_some_and(|t| t <= now) {
            // Frames already here renew leases that would run out now.
            for id in self.core.links_to_read_before(now) {
                self.read(id);
            }
            self.core.handle_timeout(now);
        }
        self.flush_core();
        let overdue: Vec<ConnId> = self
            .conns
            .iter()
            .filter(|(_, c)| {
                c.closing_deadline
                    .is_some_and(|d| d <= std::time::Instant::now())
            })
            .map(|(id, _)| *id)
            .collect();
        for id in overdue {
            log::info!("{id}: closing without flushing its last frames");
            self.drop_conn(id, false);
        }
        let unproven: Vec<ConnId> = self
            .conns
            .iter()
            .filter(|(_, c)| {
                !c.proven()
                    && c.closing_deadline.is_none()
                    && c.opened.elapsed() >= HANDSHAKE_TIMEOUT
            })
            .map(|(id, _)| *id)
            .collect();
        for id in unproven {
            self.refused.timed_out += 1;
            if self.warnings.allow() {
                if let Some(c) = self.conns.get(&id) {
                    log::warn!(
                        "{} ({id}): did not prove it holds the cluster key within {} s; closed",
                        c.peer,
                        HANDSHAKE_TIMEOUT.as_secs()
                    );
                }
            }
            self.drop_conn(id, false);
        }
    }

    fn maybe_reload(&mut self) {
        let Some(reload) = &self.reload else {
            return;
        };
        if !reload.requested.swap(false, Ordering::SeqCst) {
            return;
        }
        let path = reload.path.clone();
        match DirectoryConfig::load(&path) {
            Err(e) => log::error!("reload: {e}; the running configuration stays"),
            Ok(cfg) => {
                log::info!("reloaded {}", path.display());
                if cfg.replication.as_ref().map(|r| (r.id, &r.peers))
                    != self.replication.as_ref().map(|r| (r.id, &r.peers))
                {
                    log::warn!("reload: `id` and `[[peer]]` changes take a restart; the running replication stays");
                }
                let now = self.now();
                self.settings = settings_from_config(&cfg);
                self.core.handle_reload(now, self.settings.clone());
                self.flush_core();
            }
        }
    }

    fn accept(&mut self) {
        self.accept_backoff = false;
        for _ in 0..ACCEPT_BUDGET {
            match self.listener.accept() {
                Ok((stream, peer)) => self.add_conn(stream, peer),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    self.accept_again = false;
                    return;
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => {
                    if self.warnings.allow() {
                        log::warn!("accept failed: {e}");
                    }
                    self.accept_backoff = true;
                    return;
                }
            }
        }
    }

    fn add_conn(&mut self, mut stream: TcpStream, peer: SocketAddr) {
        if self.conns.len() >= CONNECTIONS_MAX {
            if self.warnings.allow() {
                log::warn!("{peer}: already {CONNECTIONS_MAX} connections; refused");
            }
            return;
        }
        let id = ConnId(self.next_conn);
        let Ok(token) = usize::try_from(id.0).map(Token) else {
            log::error!("{peer}: connection ids exhausted; refused");
            return;
        };
        if let Err(e) = stream.set_nodelay(true) {
            log::debug!("{peer}: TCP_NODELAY: {e}");
        }
        if let Err(e) = self
            .poll
            .registry()
            .register(&mut stream, token, Interest::READABLE)
        {
            log::warn!("{peer}: cannot register the connection: {e}");
            return;
        }
        self.next_conn += 1;
        log::debug!("{id} from {peer}");
        let keyed = self.keys.is_some();
        self.conns.insert(id, Connection::new(stream, peer, keyed));
        if !keyed {
            self.admit(id);
        }
    }

    /// `id` may be served: the core is told of it, or a replica that does
    /// not lead names the leader and lets it go. Returns whether the core
    /// now knows it. In a keyed directory this waits for the peer's first
    /// sealed frame: nobody without the key learns even who leads.
    fn admit(&mut self, id: ConnId) -> bool {
        let Some(conn) = self.conns.get_mut(&id) else {
            return false;
        };
        if self.serving.is_none() {
            // A replica that does not lead: name the leader and close.
            let leader = self.replica.as_ref().and_then(|r| r.leader());
            log::debug!("{id} from {}: redirected to {leader:?}", conn.peer);
            if conn.queue(&FromDirectory::Redirect { leader }).is_err() {
                self.drop_conn(id, false);
                return false;
            }
            conn.closing_deadline = Some(std::time::Instant::now() + CLOSE_LINGER);
            conn.redirected = true;
            self.write(id);
            return false;
        }
        conn.known_to_core = true;
        let now = self.now();
        self.core.handle_connect(now, id);
        true
    }

    /// Reads what `id` sent and feeds the frames to the core.
    fn read(&mut self, id: ConnId) {
        let now = self.now();
        let Some(c) = self.conns.get_mut(&id) else {
            return;
        };
        if c.redirected {
            return match c.discard_input(&mut self.scratch) {
                ReadOutcome::Drained | ReadOutcome::BudgetSpent => {}
                ReadOutcome::Closed | ReadOutcome::Failed(_) => self.drop_conn(id, false),
            };
        }
        if c.closing_deadline.is_some() {
            return;
        }
        let outcome = c.read(&mut self.scratch, READ_BUDGET_BYTES);
        let peer = c.peer;
        let mut answered = false;
        let failed = loop {
            let Some(c) = self.conns.get_mut(&id) else {
                return;
            };
            if c.redirected {
                break None;
            }
            match c.next_frame(self.keys.as_ref(), &self.rng) {
                Ok(Some(Inbound::Frame {
                    frame,
                    first_proven,
                })) => {
                    if first_proven && !self.admit(id) {
                        // Redirected (or gone): its frames are not acted on.
                        break None;
                    }
                    self.core.handle_frame(now, id, frame);
                }
                Ok(Some(Inbound::Answered)) => answered = true,
                Ok(None) => break None,
                Err(e) => break Some(e),
            }
        };
        if let Some(e) = failed {
            return self.link_failed(id, peer, e);
        }
        if answered {
            self.write(id);
        }
        if !self.conns.contains_key(&id) {
            return;
        }
        match outcome {
            ReadOutcome::Drained => {}
            ReadOutcome::BudgetSpent => {
                self.read_again.insert(id);
            }
            ReadOutcome::Closed => {
                log::debug!("{peer} ({id}) closed the connection");
                self.drop_conn(id, true);
            }
            ReadOutcome::Failed(e) => {
                log::info!("{peer} ({id}): read failed: {e}");
                self.drop_conn(id, true);
            }
        }
    }

    /// `id` cannot go on for `e`: counted, logged (rate-limited), closed;
    /// a plain daemon told that the key is required is let go once it has
    /// read the refusal.
    fn link_failed(&mut self, id: ConnId, peer: SocketAddr, e: LinkError) {
        let line = match &e {
            LinkError::Malformed(e) => {
                format!("{peer} ({id}): malformed frame: {e}; closing the connection")
            }
            LinkError::Handshake {
                err: StreamError::UnknownKey(k),
                ..
            } => {
                self.refused.handshakes += 1;
                format!("a connection from {peer} offered key id {k}, which this directory does not hold; closed")
            }
            LinkError::Handshake {
                err: StreamError::Plain(_),
                ..
            } => {
                self.refused.handshakes += 1;
                format!("{peer} ({id}) speaks without a cluster key, and this directory requires one; refused (is its `key_file` set?)")
            }
            LinkError::Handshake { .. } | LinkError::KeyOffered | LinkError::Random => {
                self.refused.handshakes += 1;
                format!("{peer} ({id}): {e}; closed")
            }
            LinkError::Forged(_) => {
                self.refused.forged += 1;
                format!("{peer} ({id}): a sealed frame did not open ({e}); closing the connection")
            }
        };
        if self.warnings.allow() {
            log::warn!("{line}");
        }
        let told = matches!(e, LinkError::Handshake { told: true, .. });
        match self.conns.get_mut(&id) {
            Some(c) if told => {
                c.closing_deadline = Some(std::time::Instant::now() + CLOSE_LINGER);
                c.redirected = true;
                self.write(id);
            }
            _ => self.drop_conn(id, true),
        }
    }

    /// Hands the core's output to the connections, then closes what it
    /// asked to close. Dropping a peer (full buffer, write error) is an input
    /// to the core that may produce more output, hence the loop.
    fn flush_core(&mut self) {
        loop {
            let mut written = BTreeSet::new();
            while let Some((id, frame)) = self.core.poll_output() {
                let Some(c) = self.conns.get_mut(&id) else {
                    continue;
                };
                if c.queue(&frame).is_err() {
                    log::warn!(
                        "{} ({id}): more than {OUTPUT_BUFFER_MAX_BYTES} bytes of output pending; dropping it",
                        c.peer
                    );
                    self.drop_conn(id, true);
                    continue;
                }
                written.insert(id);
            }
            if written.is_empty() {
                break;
            }
            for id in written {
                self.write(id);
            }
        }
        while let Some(id) = self.core.poll_close() {
            self.begin_close(id);
        }
        self.record_ids();
    }

    /// The core is done with `id`: close it once its output is flushed.
    fn begin_close(&mut self, id: ConnId) {
        let Some(c) = self.conns.get_mut(&id) else {
            return;
        };
        if c.pending_output() == 0 {
            return self.drop_conn(id, false);
        }
        c.closing_deadline = Some(std::time::Instant::now() + CLOSE_LINGER);
        self.read_again.remove(&id);
    }

    /// Writes what is pending for `id` and keeps its interest in step.
    fn write(&mut self, id: ConnId) {
        let Some(c) = self.conns.get_mut(&id) else {
            return;
        };
        if let Err(e) = c.flush() {
            log::info!("{} ({id}): write failed: {e}", c.peer);
            return self.drop_conn(id, true);
        }
        let pending = c.pending_output() > 0;
        if !pending && c.closing_deadline.is_some() && !c.redirected {
            return self.drop_conn(id, false);
        }
        if pending != c.write_interest {
            let interest = if pending {
                Interest::READABLE | Interest::WRITABLE
            } else {
                Interest::READABLE
            };
            let token = Token(id.0 as usize);
            match self
                .poll
                .registry()
                .reregister(&mut c.stream, token, interest)
            {
                Ok(()) => c.write_interest = pending,
                Err(e) => {
                    log::warn!("{} ({id}): cannot reregister: {e}", c.peer);
                    self.drop_conn(id, true);
                }
            }
        }
    }

    /// Closes `id` now. `tell_core`: report the disconnect to the core
    /// (not needed when the core asked for the close).
    fn drop_conn(&mut self, id: ConnId, tell_core: bool) {
        let Some(mut c) = self.conns.remove(&id) else {
            return;
        };
        self.read_again.remove(&id);
        if let Err(e) = self.poll.registry().deregister(&mut c.stream) {
            log::debug!("{id}: deregister: {e}");
        }
        if tell_core && c.known_to_core && c.closing_deadline.is_none() {
            let now = self.now();
            self.core.handle_disconnect(now, id);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    #[test]
    fn group_limits_reach_the_core() {
        let text =
            "insecure = true\n[[group]]\nname = \"big\"\naddress = \"239.192.0.10\"\nport = 7410\n\
                    max_members = 5\nmax_message_bytes = 4096\n\n\
                    [[group]]\nname = \"plain\"\naddress = \"239.192.0.11\"\nport = 7410\n";
        let cfg = DirectoryConfig::parse(text, Path::new("directory.toml")).expect("valid");
        let s = settings_from_config(&cfg);
        let limits: Vec<(&str, Option<u32>, Option<u32>)> = s
            .groups
            .iter()
            .map(|g| (g.name.as_str(), g.max_members, g.max_message_bytes))
            .collect();
        assert_eq!(
            limits,
            vec![("big", Some(5), Some(4096)), ("plain", None, None)]
        );
    }

    use chorus_proto::wire::directory::{FromDirectory, ToDirectory, DIRECTORY_FRAME_MAX_BYTES};
    use chorus_proto::wire::frame::{write_frame, FrameBuffer};
    use chorus_proto::Incarnation;
    use std::io::{Read, Write};
    use std::net::Ipv4Addr;

    const LEASE_MS: u64 = 1500;
    /// A safety net for blocking reads and polls: each returns as soon as
    /// its bytes or readiness are there.
    const WAIT: std::time::Duration = std::time::Duration::from_secs(10);

    fn send(stream: &mut std::net::TcpStream, frame: &ToDirectory) {
        let mut out = Vec::new();
        write_frame(&mut out, |b| frame.encode(b));
        stream.write_all(&out).expect("send");
    }

    fn recv(stream: &mut std::net::TcpStream, frames: &mut FrameBuffer) -> FromDirectory {
        loop {
            if let Some(body) = frames.next_frame().expect("a valid frame") {
                return FromDirectory::decode(body).expect("a frame that decodes");
            }
            let mut chunk = [0u8; 4096];
            let n = stream.read(&mut chunk).expect("read");
            assert!(n > 0, "the directory closed the link");
            frames.extend(&chunk[..n]);
        }
    }

    #[test]
    fn a_heartbeat_that_arrived_while_the_loop_was_busy_renews_the_lease() {
        let cfg = DirectoryConfig {
            listen: SocketAddr::from(([127, 0, 0, 1], 0)),
            lease_ms: LEASE_MS,
            ..DirectoryConfig::default()
        };
        let mut server = Server::bind(&cfg).expect("bind").without_grace();
        let mut events = Events::with_capacity(64);
        let mut node = std::net::TcpStream::connect(server.local_addr()).expect("connect");
        node.set_read_timeout(Some(WAIT)).expect("timeout");
        send(
            &mut node,
            &ToDirectory::Hello {
                name: "n1".into(),
                incarnation: Incarnation(1),
                ip: Ipv4Addr::LOCALHOST,
                data_port: 7401,
                order_port: 7402,
                previous: None,
                epoch: chorus_proto::Epoch(0),
            },
        );
        while server.core.node_by_name("n1").is_none() {
            server.turn(&mut events, WAIT).expect("turn");
        }
        let mut frames = FrameBuffer::new(DIRECTORY_FRAME_MAX_BYTES);
        assert!(matches!(
            recv(&mut node, &mut frames),
            FromDirectory::Welcome { .. }
        ));

        // The node heartbeats; the loop sees it ready but, busy elsewhere
        // (or not scheduled), gets to its timers only once the lease that
        // heartbeat renews would have run out.
        send(&mut node, &ToDirectory::Heartbeat);
        server.poll.poll(&mut events, Some(WAIT)).expect("poll");
        assert!(!events.is_empty(), "the heartbeat is ready to read");
        let stalled = std::time::Duration::from_millis(LEASE_MS + 500);
        server.origin = server
            .origin
            .checked_sub(stalled)
            .expect("an earlier origin");
        server.after_batch();
        assert!(
            server.core.node_by_name("n1").is_some(),
            "the node was declared dead with its heartbeat in the socket buffer"
        );

        // Silence, on the other hand, still runs the lease out.
        server.origin = server
            .origin
            .checked_sub(stalled)
            .expect("an earlier origin");
        server.after_batch();
        assert!(server.core.node_by_name("n1").is_none());
    }
}
