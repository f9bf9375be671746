//! The sequencer thread: runs [`Sequencer`] for the groups this node
//! sequences, on its own socket, so ordering never waits behind app IO.

use crate::io::{new_seal, rekey_seal};
use chorus_proto::order::sequencer::{Sequencer, SequencerInput, SequencerSettings};
use chorus_proto::wire::seal::DatagramSeal;
use chorus_proto::wire::seal::KeyRing;
use chorus_proto::wire::seal::OpenError;
use chorus_proto::Instant as CoreInstant;
use mio::net::UdpSocket;
use mio::{Events, Interest, Poll, Token, Waker};
use std::io;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{channel, Receiver, Sender, TryRecvError};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

const SOCKET: Token = Token(0);
const WAKE: Token = Token(1);

/// What the IO thread tells the sequencer thread.
#[derive(Debug)]
pub enum ToSequencer {
    /// (Re)start with these settings (after each welcome from the directory).
    Configure(SequencerSettings),
    Input(SequencerInput),
    /// Seal and open with these keys from now on (a rotation step).
    Rekey(KeyRing),
}

/// Datagrams the sequencer thread refused to open since the IO thread
/// last took them: the IO thread folds them into the host's counters
/// (`chorusctl stats`, "refused"), so that forgeries or replays sent to
/// the order port show as those sent to the data port do.
#[derive(Debug, Default)]
pub struct Refusals {
    unauthentic: AtomicU64,
    replayed: AtomicU64,
}

impl Refusals {
    fn note(&self, why: &OpenError) {
        let counter = match why {
            OpenError::Replayed(_) | OpenError::TooOld(_) => &self.replayed,
            _ => &self.unauthentic,
        };
        counter.fetch_add(1, Ordering::Relaxed);
    }

    /// The refusals since the last call: (unauthentic, replayed).
    pub fn take(&self) -> (u64, u64) {
        (
            self.unauthentic.swap(0, Ordering::Relaxed),
            self.replayed.swap(0, Ordering::Relaxed),
        )
    }
}

/// The IO thread's handle on the sequencer thread.
#[derive(Debug)]
pub struct SequencerThread {
    tx: Sender<ToSequencer>,
    waker: Arc<Waker>,
    refusals: Arc<Refusals>,
    handle: Option<JoinHandle<()>>,
}

impl SequencerThread {
    /// Starts the thread on `socket` (already bound; its port is announced
    /// to the directory as the node's order port).
    /// With `keys` it seals and opens its datagrams as a session of its own.
    pub fn spawn(
        socket: std::net::UdpSocket,
        epoch: Instant,
        keys: Option<KeyRing>,
    ) -> io::Result<SequencerThread> {
        let seal = keys.as_ref().map(new_seal).transpose()?;
        let poll = Poll::new()?;
        let waker = Arc::new(Waker::new(poll.registry(), WAKE)?);
        let (tx, rx) = channel();
        let mut socket = UdpSocket::from_std(socket);
        poll.registry()
            .register(&mut socket, SOCKET, Interest::READABLE)?;
        let refusals = Arc::new(Refusals::default());
        let theirs = Arc::clone(&refusals);
        let handle = std::thread::Builder::new()
            .name("sequencer".into())
            .spawn(move || run(poll, socket, rx, epoch, seal, &theirs))?;
        Ok(SequencerThread {
            tx,
            waker,
            refusals,
            handle: Some(handle),
        })
    }

    /// The datagrams the thread refused since the last call:
    /// (unauthentic, replayed).
    pub fn take_refusals(&self) -> (u64, u64) {
        self.refusals.take()
    }

    /// Hands a message to the thread.
    pub fn send(&self, msg: ToSequencer) {
        if self.tx.send(msg).is_ok() {
            let _ = self.waker.wake();
        }
    }
}

impl Drop for SequencerThread {
    fn drop(&mut self) {
        let (tx, _) = channel();
        drop(std::mem::replace(&mut self.tx, tx));
        let _ = self.waker.wake();
        if let Some(h) = self.handle.take() {
            let _ = h.join();
        }
    }
}

fn core_now(epoch: Instant) -> CoreInstant {
    CoreInstant::from_micros(epoch.elapsed().as_micros() as u64)
}

fn run(
    mut poll: Poll,
    socket: UdpSocket,
    rx: Receiver<ToSequencer>,
    epoch: Instant,
    mut seal: Option<DatagramSeal>,
    refusals: &Refusals,
) {
    let mut refused = 0u64;
    let mut events = Events::with_capacity(64);
    let mut seq: Option<Sequencer> = None;
    let mut buf = vec![0u8; 65536];
    let mut out = Vec::with_capacity(2048);
    loop {
        let timeout = seq.as_ref().and_then(|s| s.poll_timeout()).map(|t| {
            let now = core_now(epoch);
            Duration::from_micros(t.as_micros().saturating_sub(now.as_micros()))
        });
        if let Err(e) = poll.poll(&mut events, timeout) {
            if e.kind() != io::ErrorKind::Interrupted {
                log::error!("sequencer: poll: {e}");
                return;
            }
        }
        let now = core_now(epoch);
        loop {
            match rx.try_recv() {
                Ok(ToSequencer::Configure(s)) => {
                    let node = s.node;
                    match seq.as_mut() {
                        Some(q) => {
                            if q.reconfigure(s) {
                                log::debug!("sequencer: reconfigured as node {node}");
                            }
                        }
                        None => {
                            log::debug!("sequencer: configured as node {node}");
                            seq = Some(Sequencer::new(s));
                        }
                    }
                }
                Ok(ToSequencer::Rekey(keys)) => {
                    if let Some(k) = seal.as_mut() {
                        if let Err(e) = rekey_seal(k, &keys) {
                            log::error!("sequencer: the new keys are not taken: {e}");
                        }
                    }
                }
                Ok(ToSequencer::Input(i)) => {
                    if let Some(s) = seq.as_mut() {
                        s.handle_input(now, i);
                    }
                }
                Err(TryRecvError::Empty) => break,
                Err(TryRecvError::Disconnected) => return,
            }
        }
        // Acks are small and few; drain them all (edge-triggered readiness).
        loop {
            match socket.recv_from(&mut buf) {
                Ok((n, from)) => {
                    let bytes = match seal.as_mut() {
                        None => Ok(&buf[..n]),
                        Some(k) => k.open(&mut buf[..n]),
                    };
                    match (bytes, seq.as_mut()) {
                        (Ok(bytes), Some(s)) => s.handle_datagram(now, bytes),
                        (Ok(_), None) => {}
                        (Err(why), _) => {
                            refusals.note(&why);
                            refused += 1;
                            if refused.is_power_of_two() {
                                log::warn!(
                                    "sequencer: datagram from {from} refused: {why} ({refused} such so far)"
                                );
                            }
                        }
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) => {
                    log::debug!("sequencer: recv: {e}");
                    break;
                }
            }
        }
        let Some(s) = seq.as_mut() else { continue };
        s.handle_timeout(now);
        while let Some(dest) = s.poll_transmit(&mut out) {
            let bytes = match seal.as_mut() {
                None => &out[..],
                Some(k) => k.seal(&out),
            };
            if let Err(e) = socket.send_to(bytes, dest.into()) {
                // Lost like any datagram: members nak, we resend.
                log::debug!("sequencer: send to {dest}: {e}");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use chorus_proto::wire::seal::ClusterKey;

    /// Waits until the thread has reported `want` refusals in all.
    fn refusals_reach(t: &SequencerThread, want: (u64, u64)) -> (u64, u64) {
        let deadline = Instant::now() + Duration::from_secs(10);
        let mut got = (0, 0);
        while got != want && Instant::now() < deadline {
            let (u, r) = t.take_refusals();
            got = (got.0 + u, got.1 + r);
            std::thread::sleep(Duration::from_millis(5));
        }
        got
    }

    #[test]
    fn forged_and_replayed_datagrams_at_the_order_port_are_reported() {
        let keys = KeyRing::new(ClusterKey::from_bytes(&[7; 32]), Vec::new());
        let socket = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        // As the daemon's order socket: mio needs it non-blocking.
        socket.set_nonblocking(true).unwrap();
        let to = socket.local_addr().unwrap();
        let t = SequencerThread::spawn(socket, Instant::now(), Some(keys.clone())).unwrap();
        let peer = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        // Not sealed, and sealed under another key: unauthentic.
        peer.send_to(b"not a datagram at all", to).unwrap();
        let mut other = new_seal(&KeyRing::new(ClusterKey::from_bytes(&[8; 32]), vec![])).unwrap();
        peer.send_to(other.seal(b"order"), to).unwrap();
        // Sealed under the key, twice: the second is a replay. (The first
        // opens; the thread, not configured yet, ignores what it says.)
        let mut ours = new_seal(&keys).unwrap();
        let sealed = ours.seal(b"order").to_vec();
        peer.send_to(&sealed, to).unwrap();
        peer.send_to(&sealed, to).unwrap();
        assert_eq!(refusals_reach(&t, (2, 1)), (2, 1));
    }
}
