//! The TCP link to the directory: connect (trying each configured address),
//! frame in and out, reconnect with backoff when it drops (see
//! [`crate::backoff`] for the delays and how failures are logged). A
//! replica of a replicated directory that does not lead answers with a
//! Redirect; the link then connects to the leader it names next (see
//! [`DirectoryLink::leave`]).
//!
//! With a cluster key the link starts with the handshake of
//! [`chorus_proto::wire::seal::stream`] and every frame after it is sealed:
//! the link is reported connected (and the node's Hello sent, sealed: the
//! proof that this daemon holds the key) only once the directory answered
//! under the key offered, and nothing the directory says is believed unless
//! it opened under the key; the first frame that opens is the directory's
//! proof. A directory without the key, or without any, is refused with a
//! line that says so.

use crate::backoff::{Backoff, Outage, DEFAULT_LEASE};
use chorus_proto::wire::directory::{FromDirectory, ToDirectory, DIRECTORY_FRAME_MAX_BYTES};
use chorus_proto::wire::frame::{write_frame, FrameBuffer};
use chorus_proto::wire::seal::stream::{
    is_from_keyed_peer, ClientHandshake, SealedStream, StreamError, StreamNonce, STREAM_NONCE_BYTES,
};
use chorus_proto::wire::seal::{KeyRing, TAG_BYTES};
use mio::net::TcpStream;
use mio::{Interest, Registry, Token};
use ring::rand::SecureRandom;
use std::io::{self, Read, Write};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

/// How long data sent to the directory may stay unacknowledged by its host
/// before the kernel gives the link up (`TCP_USER_TIMEOUT`). A directory
/// host that vanished, or a replica cut off by a partition, sends no FIN or
/// reset: without this the link would look up for the many minutes of
/// TCP's retransmissions, and the daemon would never move to the replica
/// that leads now. Heartbeats (a quarter lease apart) keep data in flight,
/// so a dead link is noticed within this plus one heartbeat. It is
/// independent of the lease: a live directory host acknowledges at once,
/// however busy the directory process is.
const UNACKED_MAX: Duration = Duration::from_millis(1500);
/// How long the directory may take to answer the key hello. It answers
/// at once or closes; a host that accepted the connection and then went
/// silent must not hold the link in the handshake for ever.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(5);
/// Output kept for the directory before the link is considered stuck.
const OUT_MAX_BYTES: usize = 16 << 20;

/// Where the link stands.
#[derive(Debug, PartialEq, Eq, Clone, Copy)]
pub enum LinkState {
    Down,
    Connecting,
    /// Connected, with the key hello sent and the directory's answer
    /// awaited (keyed clusters only).
    Handshaking,
    Up,
}

/// Where the link stands with the cluster key.
enum Seal {
    Plain,
    AwaitAnswer(Box<ClientHandshake>),
    Sealed(Box<SealedStream>),
}

impl std::fmt::Debug for Seal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Seal::Plain => f.write_str("Plain"),
            Seal::AwaitAnswer(h) => write!(f, "AwaitAnswer({})", h.key_id()),
            Seal::Sealed(s) => write!(f, "{s:?}"),
        }
    }
}

/// What happened on the link during one readiness event.
#[derive(Debug, Default)]
pub struct LinkEvents {
    pub connected: bool,
    pub frames: Vec<FromDirectory>,
    pub lost: bool,
}

/// The link.
#[derive(Debug)]
pub struct DirectoryLink {
    addrs: Vec<SocketAddr>,
    next_addr: usize,
    token: Token,
    stream: Option<TcpStream>,
    state: LinkState,
    frames: FrameBuffer,
    out: Vec<u8>,
    retry_at: Option<Instant>,
    backoff: Backoff,
    outage: Outage,
    pub current: Option<SocketAddr>,
    /// Where to connect next instead of the next address of the list: the
    /// leader a replica redirected us to.
    redirect: Option<SocketAddr>,
    /// The cluster key ring; `None` for an insecure cluster.
    keys: Option<KeyRing>,
    seal: Seal,
    rng: ring::rand::SystemRandom,
    /// Opened frame bodies.
    plain: Vec<u8>,
    /// Sealed frames from a directory that did not open, since the start.
    pub forged: u64,
    /// Why the link last failed: what was logged (or summarised), kept so
    /// that a refusal can be shown and tested, not only logged.
    pub last_failure: Option<String>,
    /// When a handshake under way is given up.
    handshake_until: Option<Instant>,
}

impl DirectoryLink {
    /// A link that tries its first connection at `now`; `keys` seal it
    /// (`None`: an insecure cluster, frames in clear).
    pub fn new(addrs: Vec<SocketAddr>, token: Token, now: Instant, keys: Option<KeyRing>) -> Self {
        DirectoryLink {
            frames: frame_buffer(keys.is_some()),
            keys,
            seal: Seal::Plain,
            rng: ring::rand::SystemRandom::new(),
            plain: Vec::new(),
            forged: 0,
            last_failure: None,
            handshake_until: None,
            addrs,
            next_addr: 0,
            token,
            stream: None,
            state: LinkState::Down,
            out: Vec::new(),
            retry_at: Some(now),
            backoff: Backoff::new(DEFAULT_LEASE),
            outage: Outage::default(),
            current: None,
            redirect: None,
        }
    }

    pub fn state(&self) -> LinkState {
        self.state
    }

    /// When the link wants attention without IO (a reconnect, or giving
    /// up a handshake).
    pub fn deadline(&self) -> Option<Instant> {
        match self.state {
            LinkState::Down => self.retry_at,
            LinkState::Handshaking => self.handshake_until,
            LinkState::Connecting | LinkState::Up => None,
        }
    }

    /// Starts a connection attempt if one is due (and gives up a handshake
    /// that took too long).
    pub fn maybe_connect(&mut self, registry: &Registry, now: Instant) {
        if self.state == LinkState::Handshaking && self.handshake_until.is_some_and(|t| t <= now) {
            if let Some(s) = self.stream.as_mut() {
                let _ = registry.deregister(s);
            }
            let reason = format!(
                "directory {} did not answer the key handshake within {} s",
                self.current_label(),
                HANDSHAKE_TIMEOUT.as_secs()
            );
            self.fail(now, &reason);
            return;
        }
        if self.state != LinkState::Down || self.retry_at.is_some_and(|t| t > now) {
            return;
        }
        let addr = match self.redirect.take() {
            Some(addr) => addr,
            None if self.addrs.is_empty() => return,
            None => {
                let addr = self.addrs[self.next_addr % self.addrs.len()];
                self.next_addr += 1;
                addr
            }
        };
        match TcpStream::connect(addr) {
            Ok(mut s) => {
                // Frames to the directory are few and small: each goes at
                // once rather than waiting for the last one's ack (Nagle).
                if let Err(e) = s.set_nodelay(true) {
                    log::debug!("directory {addr}: TCP_NODELAY: {e}");
                }
                if let Err(e) = socket2::SockRef::from(&s).set_tcp_user_timeout(Some(UNACKED_MAX)) {
                    log::debug!("directory {addr}: TCP_USER_TIMEOUT: {e}");
                }
                if let Err(e) =
                    registry.register(&mut s, self.token, Interest::READABLE | Interest::WRITABLE)
                {
                    self.fail(now, &format!("directory {addr}: register: {e}"));
                    return;
                }
                self.stream = Some(s);
                self.state = LinkState::Connecting;
                self.current = Some(addr);
            }
            Err(e) => self.fail(now, &format!("directory {addr}: {e}")),
        }
    }

    /// The link failed for `reason`: the next attempt is scheduled, and the
    /// failure logged unless the outage's warnings are being summarised.
    fn fail(&mut self, now: Instant, reason: &str) {
        self.last_failure = Some(reason.to_owned());
        self.stream = None;
        self.state = LinkState::Down;
        self.frames = frame_buffer(self.keys.is_some());
        self.seal = Seal::Plain;
        self.out.clear();
        let delay = self.backoff.next_delay();
        self.retry_at = Some(now + delay);
        if let Some(warning) = self.outage.failed(now, reason, delay) {
            log::warn!("{warning}");
        } else {
            log::debug!("{reason}; next attempt in {} ms", delay.as_millis());
        }
    }

    /// The directory welcomed this node (its lease is `lease`): the outage,
    /// if there was one, is over and the next one backs off from the start.
    pub fn note_welcomed(&mut self, now: Instant, lease: Duration) {
        self.backoff.reset(lease);
        if let Some(line) = self.outage.ended(now) {
            log::info!("{line}");
        }
    }

    /// Leaves the link the directory is up on: a replica redirected us
    /// (`to` the leader, or `None` when it knows none: then the next address
    /// of the list), or it is a deposed leader. The next attempt comes after
    /// the shortest backoff when a leader is named (it is up), else after the
    /// usual growing one, so that replicas that disagree on the leader for a
    /// moment cannot make the daemon spin.
    pub fn leave(&mut self, registry: &Registry, now: Instant, to: Option<SocketAddr>) {
        if let Some(s) = self.stream.as_mut() {
            let _ = registry.deregister(s);
        }
        self.redirect = to;
        match to {
            Some(leader) => {
                log::info!(
                    "directory {}: not the leader; connecting to the leader at {leader}",
                    self.current_label()
                );
                self.stream = None;
                self.state = LinkState::Down;
                self.frames = frame_buffer(self.keys.is_some());
                self.seal = Seal::Plain;
                self.out.clear();
                self.retry_at = Some(now + crate::backoff::FIRST_RETRY);
            }
            None => {
                let reason = format!(
                    "directory {}: not the leader, and knows of none",
                    self.current_label()
                );
                self.fail(now, &reason);
            }
        }
    }

    /// Takes `keys` (a rotation step read on SIGHUP): the next handshake
    /// offers their current key. A link set up, or being set up, under a
    /// key no longer held is dropped and tried again at once under the
    /// new one, so that a retired key stops working here too. Returns true
    /// if a link that was up was dropped (the host must hear it is lost).
    pub fn set_keys(&mut self, registry: &Registry, now: Instant, keys: KeyRing) -> bool {
        let in_use = match &self.seal {
            Seal::Plain => None,
            Seal::AwaitAnswer(h) => Some(h.key_id()),
            Seal::Sealed(s) => Some(s.key_id()),
        };
        let retired = in_use.filter(|id| keys.get(*id).is_none());
        let offer = keys.current().id();
        self.keys = Some(keys);
        let Some(old) = retired else {
            return false;
        };
        let was_up = self.state == LinkState::Up;
        log::info!(
            "directory {}: the link runs under key {old}, no longer held; connecting again under key {offer}",
            self.current_label()
        );
        if let Some(s) = self.stream.as_mut() {
            let _ = registry.deregister(s);
        }
        self.stream = None;
        self.state = LinkState::Down;
        self.frames = frame_buffer(true);
        self.seal = Seal::Plain;
        self.out.clear();
        self.handshake_until = None;
        // The same directory again (it holds the new key: step 4 of a
        // rotation comes after every process took it), at once.
        self.redirect = self.current;
        self.retry_at = Some(now);
        was_up
    }

    /// Queues a frame (sealed in a keyed cluster).
    pub fn send(&mut self, frame: &ToDirectory) {
        if self.state != LinkState::Up {
            return;
        }
        if self.out.len() > OUT_MAX_BYTES {
            // Said by `flush`, which drops the link.
            self.state = LinkState::Down;
            return;
        }
        match &mut self.seal {
            Seal::Plain => write_frame(&mut self.out, |b| frame.encode(b)),
            Seal::Sealed(s) => {
                if s.seal_frame(&mut self.out, |b| frame.encode(b)).is_err() {
                    // 2^64 frames: said by `flush`, which drops the link.
                    self.state = LinkState::Down;
                }
            }
            // `Up` comes only after the handshake.
            Seal::AwaitAnswer(_) => {}
        }
    }

    /// The TCP connection is up: in a keyed cluster the hello goes out
    /// and the link waits for the answer; else it is up.
    fn on_connected(&mut self, now: Instant, ev: &mut LinkEvents) -> Result<(), String> {
        let Some(keys) = &self.keys else {
            log::info!("connected to the directory at {}", self.current_label());
            self.state = LinkState::Up;
            ev.connected = true;
            return Ok(());
        };
        let mut nonce = [0u8; STREAM_NONCE_BYTES];
        self.rng
            .fill(&mut nonce)
            .map_err(|_| "the system random source failed".to_owned())?;
        self.out.clear();
        let hs = ClientHandshake::start(keys, StreamNonce(nonce), &mut self.out);
        log::debug!(
            "directory {}: connected; offering key {}",
            self.current_label(),
            hs.key_id()
        );
        self.seal = Seal::AwaitAnswer(Box::new(hs));
        self.state = LinkState::Handshaking;
        self.handshake_until = Some(now + HANDSHAKE_TIMEOUT);
        Ok(())
    }

    /// Handles readiness; returns what happened.
    pub fn on_ready(&mut self, registry: &Registry, now: Instant) -> LinkEvents {
        let mut ev = LinkEvents::default();
        let Some(stream) = self.stream.as_mut() else {
            return ev;
        };
        if self.state == LinkState::Connecting {
            match (stream.take_error(), stream.peer_addr()) {
                (Ok(None), Ok(_)) => {
                    if let Err(e) = self.on_connected(now, &mut ev) {
                        let reason = format!("directory {}: {e}", self.current_label());
                        self.drop_link(registry, now, &mut ev, &reason);
                        return ev;
                    }
                    if self.state == LinkState::Handshaking && self.flush(registry, now) {
                        return ev;
                    }
                }
                (Ok(None), Err(e)) if e.kind() == io::ErrorKind::NotConnected => return ev,
                (Ok(Some(e)), _) | (Err(e), _) | (_, Err(e)) => {
                    let _ = registry.deregister(stream);
                    let reason = format!("directory {}: {e}", self.current_label());
                    self.fail(now, &reason);
                    return ev;
                }
            }
        }
        if let Err(e) = self.read(&mut ev) {
            let reason = match e {
                LinkError::Io(e) => {
                    format!("directory link to {} lost: {e}", self.current_label())
                }
                LinkError::Trust(why) => why,
            };
            self.drop_link(registry, now, &mut ev, &reason);
        }
        ev
    }

    /// The address in use, for the log.
    fn current_label(&self) -> String {
        self.current
            .map_or_else(|| "(none)".to_owned(), |a| a.to_string())
    }

    fn read(&mut self, ev: &mut LinkEvents) -> Result<(), LinkError> {
        let Some(stream) = self.stream.as_mut() else {
            return Ok(());
        };
        let mut chunk = [0u8; 16384];
        let mut closed = false;
        loop {
            match stream.read(&mut chunk) {
                Ok(0) => {
                    closed = true;
                    break;
                }
                Ok(n) => self.frames.extend(&chunk[..n]),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(LinkError::Io(e)),
            }
        }
        // Frames that arrived before a close are read first: a refusal
        // says more than the close.
        let at = self.current_label();
        while let Some(body) = self
            .frames
            .next_frame()
            .map_err(|e| LinkError::Io(io::Error::new(io::ErrorKind::InvalidData, e)))?
        {
            let body: &[u8] = match &mut self.seal {
                Seal::Plain => {
                    if is_from_keyed_peer(body) {
                        return Err(LinkError::Trust(format!(
                            "directory {at} requires the cluster key, and this daemon runs without one (insecure); set `key_file`"
                        )));
                    }
                    body
                }
                Seal::AwaitAnswer(_) => {
                    let Seal::AwaitAnswer(hs) = std::mem::replace(&mut self.seal, Seal::Plain)
                    else {
                        continue;
                    };
                    match hs.finish(body) {
                        Ok(sealed) => {
                            log::info!(
                                "connected to the directory at {at} (sealed under key {})",
                                sealed.key_id()
                            );
                            self.seal = Seal::Sealed(Box::new(sealed));
                            self.state = LinkState::Up;
                            ev.connected = true;
                            continue;
                        }
                        Err(StreamError::Plain(_) | StreamError::BadMagic(_)) => {
                            return Err(LinkError::Trust(format!(
                                "directory {at} answered in clear: it runs without a cluster key (insecure), and this daemon has one; refusing it"
                            )))
                        }
                        Err(e) => {
                            return Err(LinkError::Trust(format!(
                                "directory {at}: key handshake refused: {e}"
                            )))
                        }
                    }
                }
                Seal::Sealed(s) => {
                    let proven = s.peer_proven();
                    if let Err(e) = s.open_into(body, &mut self.plain) {
                        self.forged += 1;
                        return Err(LinkError::Trust(if proven {
                            format!("directory link to {at}: a sealed frame did not open ({e}); dropping the link")
                        } else {
                            format!("directory {at} does not hold this cluster's key; is it another cluster's directory?")
                        }));
                    }
                    &self.plain
                }
            };
            let frame = FromDirectory::decode(body).map_err(|e| {
                LinkError::Io(io::Error::new(
                    io::ErrorKind::InvalidData,
                    format!("bad frame from the directory: {e}"),
                ))
            })?;
            ev.frames.push(frame);
        }
        if closed {
            if let Seal::AwaitAnswer(hs) = &self.seal {
                return Err(LinkError::Trust(format!(
                    "directory {at} closed the link during the key handshake: it does not hold key {} (is it another cluster's directory?) or runs without a cluster key",
                    hs.key_id()
                )));
            }
            return Err(LinkError::Io(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "closed by the directory",
            )));
        }
        Ok(())
    }

    fn drop_link(&mut self, registry: &Registry, now: Instant, ev: &mut LinkEvents, reason: &str) {
        if let Some(s) = self.stream.as_mut() {
            let _ = registry.deregister(s);
        }
        self.fail(now, reason);
        ev.lost = true;
    }

    /// Writes queued frames; reports a lost link.
    pub fn flush(&mut self, registry: &Registry, now: Instant) -> bool {
        if self.state == LinkState::Down && self.stream.is_some() {
            let mut ev = LinkEvents::default();
            let reason = format!(
                "directory link to {}: output backlog over {OUT_MAX_BYTES} bytes; dropping the link",
                self.current_label()
            );
            self.drop_link(registry, now, &mut ev, &reason);
            return true;
        }
        if !matches!(self.state, LinkState::Up | LinkState::Handshaking) || self.out.is_empty() {
            return false;
        }
        let Some(stream) = self.stream.as_mut() else {
            return false;
        };
        let mut pos = 0;
        let result = loop {
            if pos == self.out.len() {
                break Ok(());
            }
            match stream.write(&self.out[pos..]) {
                Ok(n) => pos += n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break Ok(()),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => break Err(e),
            }
        };
        self.out.drain(..pos);
        if let Err(e) = result {
            let mut ev = LinkEvents::default();
            let reason = format!("directory link to {} lost: {e}", self.current_label());
            self.drop_link(registry, now, &mut ev, &reason);
            return true;
        }
        false
    }
}

/// Why the link was given up while reading.
#[derive(Debug)]
enum LinkError {
    Io(io::Error),
    /// The directory is not one this daemon may trust, or cannot trust
    /// this daemon: the whole line to log.
    Trust(String),
}

/// A frame buffer for the link: a sealed frame carries its tag besides
/// the frame the limit is for.
fn frame_buffer(keyed: bool) -> FrameBuffer {
    FrameBuffer::new(DIRECTORY_FRAME_MAX_BYTES + if keyed { TAG_BYTES } else { 0 })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;
    use chorus_config::{DirectoryConfig, Trust};
    use chorus_proto::wire::seal::stream::{KIND_STREAM_ACCEPT, KIND_STREAM_HELLO};
    use chorus_proto::wire::seal::{ClusterKey, KeyId};
    use chorus_proto::wire::{MAGIC, VERSION};
    use chorus_proto::{Epoch, Incarnation};
    use mio::{Events, Poll};
    use std::net::Ipv4Addr;

    const KEY: [u8; 32] = [7; 32];
    const OTHER_KEY: [u8; 32] = [8; 32];
    const WAIT: Duration = Duration::from_secs(10);

    fn ring(secret: [u8; 32]) -> KeyRing {
        KeyRing::new(ClusterKey::from_bytes(&secret), vec![])
    }

    fn directory(trust: Trust) -> chorus_directory::ServerHandle {
        let cfg = DirectoryConfig {
            listen: SocketAddr::from(([127, 0, 0, 1], 0)),
            trust,
            ..DirectoryConfig::default()
        };
        chorus_directory::Server::bind(&cfg)
            .unwrap()
            .without_grace()
            .spawn()
            .unwrap()
    }

    /// How a link's first attempt ended.
    #[derive(Debug)]
    enum Outcome {
        Welcomed,
        Failed(String),
    }

    /// Connects `keys`' link to `addr`, says Hello once connected, and
    /// returns whether it was welcomed or why the link failed.
    fn attempt(addr: SocketAddr, keys: Option<KeyRing>) -> Outcome {
        let mut poll = Poll::new().unwrap();
        let start = Instant::now();
        let mut link = DirectoryLink::new(vec![addr], Token(1), start, keys);
        drive(&mut link, &mut poll)
    }

    /// Drives `link` from its next attempt (due now) until it is welcomed
    /// or fails.
    fn drive(link: &mut DirectoryLink, poll: &mut Poll) -> Outcome {
        let mut events = Events::with_capacity(16);
        let start = Instant::now();
        link.maybe_connect(poll.registry(), start);
        while start.elapsed() < WAIT {
            poll.poll(&mut events, Some(Duration::from_millis(50)))
                .unwrap();
            let now = Instant::now();
            let ev = link.on_ready(poll.registry(), now);
            if ev.connected {
                link.send(&ToDirectory::Hello {
                    name: "n1".into(),
                    incarnation: Incarnation(1),
                    ip: Ipv4Addr::LOCALHOST,
                    data_port: 7401,
                    order_port: 7402,
                    previous: None,
                    epoch: Epoch(0),
                });
            }
            if ev
                .frames
                .iter()
                .any(|f| matches!(f, FromDirectory::Welcome { .. }))
            {
                return Outcome::Welcomed;
            }
            link.flush(poll.registry(), now);
            if link.state() == LinkState::Down {
                return Outcome::Failed(link.last_failure.clone().unwrap_or_default());
            }
        }
        panic!("the link neither came up nor failed: a hang");
    }

    fn failed(o: Outcome) -> String {
        match o {
            Outcome::Failed(why) => why,
            Outcome::Welcomed => panic!("welcomed where it should be refused"),
        }
    }

    #[test]
    fn a_keyed_link_is_welcomed_by_a_directory_with_its_key() {
        let d = directory(Trust::Ephemeral(KEY));
        assert!(matches!(
            attempt(d.local_addr(), Some(ring(KEY))),
            Outcome::Welcomed
        ));
    }

    /// A directory holding both keys, as during a rotation.
    fn directory_with_two_keys(dir: &std::path::Path) -> chorus_directory::ServerHandle {
        use std::os::unix::fs::PermissionsExt as _;
        let _ = std::fs::remove_dir_all(dir);
        std::fs::create_dir_all(dir).unwrap();
        let mut files = Vec::new();
        for (name, secret) in [("a.key", KEY), ("b.key", OTHER_KEY)] {
            let p = dir.join(name);
            std::fs::write(&p, ClusterKey::text_of(&secret)).unwrap();
            std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o600)).unwrap();
            files.push(p);
        }
        directory(Trust::KeyFiles {
            key_file: files[0].clone(),
            accept_key_files: vec![files[1].clone()],
        })
    }

    /// The key the link's stream runs under, if it has one.
    fn link_key(link: &DirectoryLink) -> Option<KeyId> {
        match &link.seal {
            Seal::Sealed(s) => Some(s.key_id()),
            _ => None,
        }
    }

    #[test]
    fn new_keys_keep_a_link_under_a_key_still_held_and_set_up_one_under_a_retired_key_again() {
        let dir = std::env::temp_dir().join(format!("chorusd-link-rekey-{}", std::process::id()));
        let d = directory_with_two_keys(&dir);
        let (a, b) = (
            ClusterKey::from_bytes(&KEY),
            ClusterKey::from_bytes(&OTHER_KEY),
        );
        let mut poll = Poll::new().unwrap();
        let now = Instant::now();
        let mut link = DirectoryLink::new(vec![d.local_addr()], Token(1), now, Some(ring(KEY)));
        assert!(matches!(drive(&mut link, &mut poll), Outcome::Welcomed));
        assert_eq!(link_key(&link), Some(a.id()));
        // Steps 2 and 3 of a rotation: the old key is still held, the link
        // stays as it is.
        let both = KeyRing::new(a.clone(), vec![b.clone()]);
        assert!(!link.set_keys(poll.registry(), Instant::now(), both));
        let switched = KeyRing::new(b.clone(), vec![a.clone()]);
        assert!(!link.set_keys(poll.registry(), Instant::now(), switched));
        assert_eq!(link.state(), LinkState::Up);
        assert_eq!(link_key(&link), Some(a.id()));
        // Step 4: the link's key retired. It is dropped (it was up) and set
        // up again at once, to the same directory, under the new key.
        assert!(link.set_keys(poll.registry(), Instant::now(), ring(OTHER_KEY)));
        assert_eq!(link.state(), LinkState::Down);
        assert!(matches!(drive(&mut link, &mut poll), Outcome::Welcomed));
        assert_eq!(link_key(&link), Some(b.id()));
        assert_eq!(link.current, Some(d.local_addr()));
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn plain_links_are_unchanged() {
        let d = directory(Trust::Insecure);
        assert!(matches!(attempt(d.local_addr(), None), Outcome::Welcomed));
    }

    #[test]
    fn a_directory_with_another_key_is_refused_and_says_so() {
        let d = directory(Trust::Ephemeral(OTHER_KEY));
        let why = failed(attempt(d.local_addr(), Some(ring(KEY))));
        assert!(
            why.contains("closed the link during the key handshake")
                && why.contains("another cluster's directory"),
            "{why}"
        );
    }

    #[test]
    fn a_keyed_link_and_an_insecure_directory_refuse_each_other() {
        let d = directory(Trust::Insecure);
        let why = failed(attempt(d.local_addr(), Some(ring(KEY))));
        assert!(why.contains("runs without a cluster key"), "{why}");
    }

    #[test]
    fn an_insecure_link_is_told_the_directory_requires_the_key() {
        let d = directory(Trust::Ephemeral(KEY));
        let why = failed(attempt(d.local_addr(), None));
        assert!(
            why.contains("requires the cluster key, and this daemon runs without one"),
            "{why}"
        );
    }

    /// A directory that knows the key id (it is no secret) but not the key
    /// answers the hello; its first sealed frame does not open, and the
    /// link says the directory does not hold the key.
    #[test]
    fn an_impostor_answering_under_the_key_id_is_found_out_by_its_first_frame() {
        use std::io::{Read as _, Write as _};
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let impostor = std::thread::spawn(move || {
            let (mut s, _) = listener.accept().unwrap();
            let mut hello = [0u8; 4 + stream_hs_bytes()];
            s.read_exact(&mut hello).unwrap();
            assert_eq!(hello[4 + 3], KIND_STREAM_HELLO);
            let mut out = Vec::new();
            write_frame(&mut out, |b| {
                b.extend_from_slice(&MAGIC.to_be_bytes());
                b.push(VERSION);
                b.push(KIND_STREAM_ACCEPT);
                b.extend_from_slice(&hello[4 + 4..4 + 8]);
                b.extend_from_slice(&[9; 32]);
            });
            // A "Welcome" sealed under a key of its own.
            write_frame(&mut out, |b| b.extend_from_slice(&[0x42; 64]));
            s.write_all(&out).unwrap();
            let mut rest = Vec::new();
            let _ = s.read_to_end(&mut rest);
        });
        let why = failed(attempt(addr, Some(ring(KEY))));
        assert!(
            why.contains("does not hold this cluster's key; is it another cluster's directory?"),
            "{why}"
        );
        impostor.join().unwrap();
    }

    /// A host that accepts the connection and never answers the hello
    /// does not hold the link in the handshake.
    #[test]
    fn a_directory_that_never_answers_the_hello_is_given_up() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let mut poll = Poll::new().unwrap();
        let start = Instant::now();
        let mut link = DirectoryLink::new(vec![addr], Token(1), start, Some(ring(KEY)));
        link.maybe_connect(poll.registry(), start);
        let (_held, _) = listener.accept().unwrap();
        let mut events = Events::with_capacity(16);
        while link.state() != LinkState::Handshaking {
            poll.poll(&mut events, Some(Duration::from_millis(50)))
                .unwrap();
            link.on_ready(poll.registry(), Instant::now());
            assert!(start.elapsed() < WAIT, "the TCP connection did not come up");
        }
        let due = link.deadline().expect("a handshake deadline");
        assert!(due > start && due <= Instant::now() + HANDSHAKE_TIMEOUT);
        link.maybe_connect(poll.registry(), due);
        assert_eq!(link.state(), LinkState::Down);
        let why = link.last_failure.clone().unwrap_or_default();
        assert!(why.contains("did not answer the key handshake"), "{why}");
    }

    const fn stream_hs_bytes() -> usize {
        chorus_proto::wire::seal::stream::HANDSHAKE_BYTES
    }
}
