//! The sequencer thread: runs [`Sequencer`] for the groups this node
//! sequences, on its own socket, so ordering never waits behind app IO.

use crate::io::Seal;
use chorus_proto::order::sequencer::{Sequencer, SequencerInput, SequencerSettings};
use chorus_proto::wire::seal::KeyRing;
use chorus_proto::Instant as CoreInstant;
use mio::net::UdpSocket;
use mio::{Events, Interest, Poll, Token, Waker};
use std::io;
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
}

/// The IO thread's handle on the sequencer thread.
#[derive(Debug)]
pub struct SequencerThread {
    tx: Sender<ToSequencer>,
    waker: Arc<Waker>,
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
        let seal = keys.as_ref().map(Seal::new).transpose()?;
        let poll = Poll::new()?;
        let waker = Arc::new(Waker::new(poll.registry(), WAKE)?);
        let (tx, rx) = channel();
        let mut socket = UdpSocket::from_std(socket);
        poll.registry()
            .register(&mut socket, SOCKET, Interest::READABLE)?;
        let handle = std::thread::Builder::new()
            .name("sequencer".into())
            .spawn(move || run(poll, socket, rx, epoch, seal))?;
        Ok(SequencerThread {
            tx,
            waker,
            handle: Some(handle),
        })
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
    mut seal: Option<Seal>,
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
                        Some(k) => k.opener.open(&mut buf[..n]),
                    };
                    match (bytes, seq.as_mut()) {
                        (Ok(bytes), Some(s)) => s.handle_datagram(now, bytes),
                        (Ok(_), None) => {}
                        (Err(why), _) => {
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
                Some(k) => {
                    k.sealer.seal(&out, &mut k.out);
                    &k.out[..]
                }
            };
            if let Err(e) = socket.send_to(bytes, dest.into()) {
                // Lost like any datagram: members nak, we resend.
                log::debug!("sequencer: send to {dest}: {e}");
            }
        }
    }
}
