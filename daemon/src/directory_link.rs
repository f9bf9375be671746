//! The TCP link to the directory: connect (trying each configured address),
//! frame in and out, reconnect with backoff when it drops (see
//! [`crate::backoff`] for the delays and how failures are logged). A
//! replica of a replicated directory that does not lead answers with a
//! Redirect; the link then connects to the leader it names next (see
//! [`DirectoryLink::leave`]).

use crate::backoff::{Backoff, Outage, DEFAULT_LEASE};
use chorus_proto::wire::directory::{FromDirectory, ToDirectory, DIRECTORY_FRAME_MAX_BYTES};
use chorus_proto::wire::frame::{write_frame, FrameBuffer};
use mio::net::TcpStream;
use mio::{Interest, Registry, Token};
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
/// Output kept for the directory before the link is considered stuck.
const OUT_MAX_BYTES: usize = 16 << 20;

/// Where the link stands.
#[derive(Debug, PartialEq, Eq, Clone, Copy)]
pub enum LinkState {
    Down,
    Connecting,
    Up,
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
}

impl DirectoryLink {
    /// A link that tries its first connection at `now`.
    pub fn new(addrs: Vec<SocketAddr>, token: Token, now: Instant) -> Self {
        DirectoryLink {
            addrs,
            next_addr: 0,
            token,
            stream: None,
            state: LinkState::Down,
            frames: FrameBuffer::new(DIRECTORY_FRAME_MAX_BYTES),
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

    /// When the link wants attention without IO (a reconnect).
    pub fn deadline(&self) -> Option<Instant> {
        (self.state == LinkState::Down)
            .then_some(self.retry_at)
            .flatten()
    }

    /// Starts a connection attempt if one is due.
    pub fn maybe_connect(&mut self, registry: &Registry, now: Instant) {
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
        self.stream = None;
        self.state = LinkState::Down;
        self.frames = FrameBuffer::new(DIRECTORY_FRAME_MAX_BYTES);
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
                self.frames = FrameBuffer::new(DIRECTORY_FRAME_MAX_BYTES);
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

    /// Queues a frame.
    pub fn send(&mut self, frame: &ToDirectory) {
        if self.state != LinkState::Up {
            return;
        }
        if self.out.len() > OUT_MAX_BYTES {
            // Said by `flush`, which drops the link.
            self.state = LinkState::Down;
            return;
        }
        write_frame(&mut self.out, |b| frame.encode(b));
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
                    log::info!("connected to the directory at {}", self.current_label());
                    self.state = LinkState::Up;
                    ev.connected = true;
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
            let reason = format!("directory link to {} lost: {e}", self.current_label());
            self.drop_link(registry, now, &mut ev, &reason);
        }
        ev
    }

    /// The address in use, for the log.
    fn current_label(&self) -> String {
        self.current
            .map_or_else(|| "(none)".to_owned(), |a| a.to_string())
    }

    fn read(&mut self, ev: &mut LinkEvents) -> io::Result<()> {
        let Some(stream) = self.stream.as_mut() else {
            return Ok(());
        };
        let mut chunk = [0u8; 16384];
        loop {
            match stream.read(&mut chunk) {
                Ok(0) => {
                    return Err(io::Error::new(
                        io::ErrorKind::UnexpectedEof,
                        "closed by the directory",
                    ))
                }
                Ok(n) => self.frames.extend(&chunk[..n]),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        while let Some(body) = self
            .frames
            .next_frame()
            .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))?
        {
            let frame = FromDirectory::decode(body).map_err(|e| {
                io::Error::new(
                    io::ErrorKind::InvalidData,
                    format!("bad frame from the directory: {e}"),
                )
            })?;
            ev.frames.push(frame);
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
        if self.state != LinkState::Up || self.out.is_empty() {
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
