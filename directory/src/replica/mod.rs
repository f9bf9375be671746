//! A replica of a replicated directory: Raft among the replicas decides
//! which one serves the daemons, and under which epoch.
//!
//! openraft (async, tokio) runs on a thread of its own with a
//! single-threaded runtime; the directory's mio loop asks [`Replica`] on
//! every turn whether it may serve, and is woken through its `Waker` when
//! that may have changed.
//!
//! # Who serves
//! A replica serves daemons only while all of these hold:
//! 1. Raft made it leader in term `T`;
//! 2. its [`Command::Lead`] for `T` is committed: a majority has it, and
//!    its log is the cluster's (Raft commits only the current leader's
//!    entries this way);
//! 3. a majority acknowledged its heartbeats within the last
//!    [`SERVE_LEASE`] (checked every [`ROLE_CHECK`] with openraft's
//!    `ensure_linearizable`, the lease counted from *before* the check).
//!
//! Followers that acknowledged a heartbeat refuse to vote for anyone else
//! for the longest election timeout (openraft's leader lease, 1.5 s), three
//! times [`SERVE_LEASE`]: so a leader cut off from its majority stops
//! serving before another can be elected, even if it never learns of the
//! new term.
//! Clocks need not agree between hosts: each lease is measured on one
//! host's monotonic clock; only their rates must roughly agree.
//!
//! It serves under epoch `T` (in every Welcome). Each new epoch starts a
//! fresh directory core, in its grace period, exactly like a restarted
//! directory: the daemons re-register under their previous ids and report
//! their groups, and views go on numbered above the highest reported.
//!
//! # Ids are never handed out twice
//! The serving leader records in the log the highest node and group ids it
//! has handed out, as soon as they grow ([`Replica::record_ids`]; about a
//! millisecond to commit). A new leader starts its core with fresh ids
//! [`ID_MARGIN`] above the highest recorded: the margin covers ids the old
//! leader handed out in its last moments, before their record committed.
//! (The cluster's first leader has no predecessor and starts at 1.)

mod net;
mod store;
mod types;

use chorus_config::{ReplicaId, ReplicationConfig};
use chorus_proto::directory::IdFloors;
use chorus_proto::wire::seal::KeyRing;
use chorus_proto::Epoch;
use mio::Waker;
use openraft::{BasicNode, Config, Raft, ServerState, SnapshotPolicy};
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};
pub use store::{StoreError, STATE_FILE};
use types::{Command, TypeConfig};

/// How often the replica looks at its role and renews its lease.
pub const ROLE_CHECK: Duration = Duration::from_millis(100);
/// How long a confirmed majority lets the leader serve.
pub const SERVE_LEASE: Duration = Duration::from_millis(500);
/// Raft heartbeat interval, in ms.
const HEARTBEAT_MS: u64 = 100;
/// Raft election timeout, in ms: at least twice [`SERVE_LEASE`].
const ELECTION_MIN_MS: u64 = 1000;
const ELECTION_MAX_MS: u64 = 1500;
/// Longest wait for a claim or a lease check.
const CHECK_TIMEOUT: Duration = Duration::from_millis(300);
/// How far above the recorded ids a new leader starts handing out fresh
/// ones (see the module documentation).
pub const ID_MARGIN: u32 = 1024;
/// How far above the highest reported view a leader numbers a recovered
/// group's first view: a deposed leader may have handed views to daemons
/// cut off with it, in its last lease, that nobody reported.
pub const VIEW_MARGIN: u64 = 64;

/// Why a replica could not start.
#[derive(Debug, thiserror::Error)]
pub enum ReplicaError {
    #[error("raft state: {0}")]
    Store(#[from] StoreError),
    #[error("raft address {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("no [[peer]] entry for this replica's id")]
    NoOwnPeer,
    #[error("raft: {0}")]
    Raft(String),
    #[error("raft thread: {0}")]
    Thread(std::io::Error),
}

/// Leave to serve daemons.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Grant {
    pub epoch: Epoch,
    /// Fresh ids are to be handed out above these.
    pub floors: IdFloors,
    until: Instant,
}

/// What the mio loop needs to know, written by the Raft thread.
#[derive(Debug, Clone, Default)]
struct Status {
    /// May serve until the grant's `until`.
    grant: Option<Grant>,
    /// The daemon address of the replica that leads, if another one.
    leader: Option<SocketAddr>,
}

/// This replica's Raft, running on its own thread. Dropping it stops Raft.
#[derive(Debug)]
pub struct Replica {
    id: ReplicaId,
    status: Arc<Mutex<Status>>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    ids: tokio::sync::mpsc::UnboundedSender<IdFloors>,
    thread: Option<JoinHandle<()>>,
}

impl Replica {
    /// Opens the state in `cfg.state_dir`, binds the Raft address and starts
    /// Raft. `waker` wakes the directory's loop when the role may change.
    /// `keys`: the cluster key ring the Raft port is sealed with (`None`:
    /// insecure, frames in clear).
    pub fn start(
        cfg: &ReplicationConfig,
        cluster: u32,
        waker: Arc<Waker>,
        keys: Option<KeyRing>,
    ) -> Result<Replica, ReplicaError> {
        let own = cfg.own().ok_or(ReplicaError::NoOwnPeer)?;
        let log_store = store::LogStore::open(&cfg.state_dir)?;
        let listener =
            std::net::TcpListener::bind(own.raft).map_err(|source| ReplicaError::Bind {
                addr: own.raft,
                source,
            })?;
        listener
            .set_nonblocking(true)
            .map_err(|source| ReplicaError::Bind {
                addr: own.raft,
                source,
            })?;
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(ReplicaError::Thread)?;
        let config = Config {
            cluster_name: format!("chorus-{cluster:08x}"),
            heartbeat_interval: HEARTBEAT_MS,
            election_timeout_min: ELECTION_MIN_MS,
            election_timeout_max: ELECTION_MAX_MS,
            snapshot_policy: SnapshotPolicy::Never,
            ..Config::default()
        }
        .validate()
        .map_err(|e| ReplicaError::Raft(e.to_string()))?;
        let me = net::Identity {
            cluster,
            id: cfg.id.0,
        };
        let state_machine = store::StateMachine::default();
        let raft = runtime
            .block_on(Raft::new(
                cfg.id.0,
                Arc::new(config),
                net::Network {
                    me,
                    keys: keys.clone(),
                },
                log_store,
                state_machine.clone(),
            ))
            .map_err(|e| ReplicaError::Raft(e.to_string()))?;
        let listener = {
            let _guard = runtime.enter();
            tokio::net::TcpListener::from_std(listener).map_err(|source| ReplicaError::Bind {
                addr: own.raft,
                source,
            })?
        };
        let members: BTreeMap<u64, BasicNode> = cfg
            .peers
            .iter()
            .map(|p| (p.id.0, BasicNode::new(p.raft.to_string())))
            .collect();
        let daemon_addrs: BTreeMap<u64, SocketAddr> =
            cfg.peers.iter().map(|p| (p.id.0, p.listen)).collect();
        let status = Arc::new(Mutex::new(Status::default()));
        let (stop, stopped) = tokio::sync::oneshot::channel();
        let (ids, id_records) = tokio::sync::mpsc::unbounded_channel();
        let role = Role {
            id: cfg.id.0,
            raft,
            state: state_machine.clone(),
            status: Arc::clone(&status),
            waker,
            daemon_addrs,
        };
        let thread = std::thread::Builder::new()
            .name("chorus-raft".into())
            .spawn(move || {
                runtime.block_on(async move {
                    tokio::spawn(net::serve(listener, role.raft.clone(), me, keys));
                    role.initialize(members).await;
                    tokio::select! {
                        _ = stopped => {}
                        () = role.watch(id_records) => {}
                    }
                    if let Err(e) = role.raft.shutdown().await {
                        log::warn!("raft shutdown: {e}");
                    }
                });
            })
            .map_err(ReplicaError::Thread)?;
        if cfg.peers.len() & 1 == 0 {
            log::warn!(
                "{} replicas need {} up to serve: an even count tolerates no more failures than one less; 3 or 5 is the usual choice",
                cfg.peers.len(),
                cfg.peers.len() / 2 + 1
            );
        }
        log::info!(
            "{} of {} replicas; raft on {}",
            cfg.id,
            cfg.peers.len(),
            own.raft
        );
        Ok(Replica {
            id: cfg.id,
            status,
            stop: Some(stop),
            ids,
            thread: Some(thread),
        })
    }

    fn status(&self) -> Status {
        self.status
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// The leave to serve now, if any.
    pub fn serving(&self, now: Instant) -> Option<Grant> {
        self.status().grant.filter(|g| g.until > now)
    }

    /// When the current grant runs out (the loop must look again then).
    pub fn grant_ends(&self) -> Option<Instant> {
        self.status().grant.map(|g| g.until)
    }

    /// Records in the log that ids up to `floors` were handed out (only
    /// the serving leader's records are taken; see the module doc).
    pub fn record_ids(&self, floors: IdFloors) {
        // The Raft thread is gone only when the replica is being dropped.
        let _ = self.ids.send(floors);
    }

    /// The daemon address of the leader, if another replica leads.
    pub fn leader(&self) -> Option<SocketAddr> {
        self.status().leader
    }

    /// This replica's id.
    pub fn id(&self) -> ReplicaId {
        self.id
    }
}

impl Drop for Replica {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(t) = self.thread.take() {
            if t.join().is_err() {
                log::error!("the raft thread panicked");
            }
        }
    }
}

/// The Raft thread's side: watches the role and keeps [`Status`].
struct Role {
    id: u64,
    raft: Raft<TypeConfig>,
    state: store::StateMachine,
    status: Arc<Mutex<Status>>,
    waker: Arc<Waker>,
    daemon_addrs: BTreeMap<u64, SocketAddr>,
}

impl Role {
    /// Proposes the initial membership (every peer) if this replica's log
    /// is pristine. Every replica does so at its first start with the same
    /// peers, which Raft allows; a replica that has a vote or a log already
    /// skips it and learns the membership from the leader.
    async fn initialize(&self, members: BTreeMap<u64, BasicNode>) {
        match self.raft.is_initialized().await {
            Ok(true) => {}
            Ok(false) => {
                if let Err(e) = self.raft.initialize(members).await {
                    log::info!("raft: not initialising: {e}");
                }
            }
            Err(e) => log::error!("raft: {e}"),
        }
    }

    fn set(&self, grant: Option<Grant>, leader: Option<SocketAddr>) {
        let mut s = self.status.lock().unwrap_or_else(|p| p.into_inner());
        let role_changed = s.grant.map(|g| g.epoch) != grant.map(|g| g.epoch) || s.leader != leader;
        s.grant = grant;
        s.leader = leader;
        drop(s);
        if role_changed {
            if let Err(e) = self.waker.wake() {
                log::warn!("raft: cannot wake the directory loop: {e}");
            }
        }
    }

    /// Every [`ROLE_CHECK`]: claims the term once leader, then renews the
    /// serving lease while a majority answers.
    async fn watch(&self, mut id_records: tokio::sync::mpsc::UnboundedReceiver<IdFloors>) {
        let mut tick = tokio::time::interval(ROLE_CHECK);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut claimed: Option<u64> = None;
        let mut grant: Option<Grant> = None;
        let mut floors = IdFloors::default();
        let mut fatal_logged = false;
        loop {
            tokio::select! {
                _ = tick.tick() => {}
                Some(f) = id_records.recv() => {
                    if claimed.is_some() {
                        self.record_ids(f);
                    }
                    continue;
                }
            }
            let m = self.raft.metrics().borrow().clone();
            if let Err(e) = &m.running_state {
                // Raft stopped (a storage error): this replica serves no
                // more; the others carry on without it.
                if !fatal_logged {
                    log::error!("replica {}: raft stopped: {e}; not serving", self.id);
                    fatal_logged = true;
                }
            }
            let leader = m
                .current_leader
                .filter(|l| *l != self.id)
                .and_then(|l| self.daemon_addrs.get(&l).copied());
            if m.state != ServerState::Leader {
                if claimed.take().is_some() {
                    log::warn!(
                        "replica {} no longer leads (term {}); it stops serving daemons",
                        self.id,
                        m.current_term
                    );
                }
                grant = None;
                self.set(None, leader);
                continue;
            }
            let term = m.current_term;
            if claimed != Some(term) {
                grant = None;
                self.set(None, None);
                let claim = Command::Lead {
                    replica: self.id,
                    term,
                };
                match tokio::time::timeout(CHECK_TIMEOUT, self.raft.client_write(claim)).await {
                    Ok(Ok(_)) => {
                        // Applied up to the claim: every earlier leader's
                        // record of its ids is in.
                        let l = self.state.leadership();
                        let margin = if l.leads > 1 { ID_MARGIN } else { 0 };
                        floors = IdFloors {
                            node: l.node_floor.saturating_add(margin),
                            group: l.group_floor.saturating_add(margin),
                        };
                        log::info!(
                            "replica {} leads in term {term}: it serves daemons under epoch {term}, fresh ids above node {} group {}",
                            self.id,
                            floors.node,
                            floors.group
                        );
                        claimed = Some(term);
                    }
                    Ok(Err(e)) => {
                        log::info!("replica {}: claim for term {term} failed: {e}", self.id);
                        continue;
                    }
                    Err(_) => {
                        log::info!(
                            "replica {}: claim for term {term} not committed in time",
                            self.id
                        );
                        continue;
                    }
                }
            }
            let asked = Instant::now();
            match tokio::time::timeout(CHECK_TIMEOUT, self.raft.ensure_linearizable()).await {
                Ok(Ok(_)) if self.raft.metrics().borrow().current_term == term => {
                    grant = Some(Grant {
                        epoch: Epoch(term),
                        floors,
                        until: asked + SERVE_LEASE,
                    });
                }
                Ok(Ok(_)) => {}
                Ok(Err(e)) => log::debug!("replica {}: lease check: {e}", self.id),
                Err(_) => log::debug!("replica {}: no majority answered in time", self.id),
            }
            if grant.is_some_and(|g| g.until <= Instant::now()) {
                log::warn!(
                    "replica {} lost its majority (term {term}); it stops serving daemons",
                    self.id
                );
                grant = None;
            }
            self.set(grant, None);
        }
    }

    /// Writes a record of the ids handed out, without waiting for it (the
    /// role loop must go on renewing the lease meanwhile).
    fn record_ids(&self, f: IdFloors) {
        let raft = self.raft.clone();
        let id = self.id;
        tokio::spawn(async move {
            let record = Command::Floors {
                node: f.node,
                group: f.group,
            };
            if let Err(e) = raft.client_write(record).await {
                log::debug!("replica {id}: ids not recorded ({e}); a later record covers them");
            }
        });
    }
}
