//! One daemon's TCP connection at the edge: frame reassembly on the way in,
//! a bounded output buffer on the way out, and in a keyed cluster the
//! handshake and sealing of [`chorus_proto::wire::seal::stream`].

use chorus_proto::wire::directory::{FromDirectory, ToDirectory, DIRECTORY_FRAME_MAX_BYTES};
use chorus_proto::wire::frame::{write_frame, FrameBuffer};
use chorus_proto::wire::seal::stream::{
    self, is_from_keyed_peer, SealedStream, StreamError, StreamNonce, STREAM_NONCE_BYTES,
};
use chorus_proto::wire::seal::{KeyRing, TAG_BYTES};
use chorus_proto::wire::DecodeError;
use mio::net::TcpStream;
use ring::rand::SecureRandom;
use std::io::{self, Read, Write};
use std::net::SocketAddr;

/// Most bytes queued for one peer. A daemon that stops reading its views
/// this far behind is dropped rather than letting the directory grow.
pub const OUTPUT_BUFFER_MAX_BYTES: usize = 16 << 20;

/// What a round of reading found.
#[derive(Debug)]
pub(crate) enum ReadOutcome {
    /// Read until `WouldBlock`: wait for the next readiness event.
    Drained,
    /// The per-wake budget ran out with data possibly left: read again soon
    /// (edge-triggered readiness will not fire again by itself).
    BudgetSpent,
    /// The peer closed its end.
    Closed,
    /// The socket failed.
    Failed(io::Error),
}

/// The frame could not be queued: the peer is too far behind.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct OutputFull;

/// Where a connection stands with the cluster key.
#[derive(Debug)]
enum Seal {
    /// An insecure directory: frames in clear, as before keys.
    Plain,
    /// A keyed directory waiting for the peer's hello.
    AwaitHello,
    /// The handshake is done; see [`SealedStream::peer_proven`] for
    /// whether the peer has shown it holds the key.
    Sealed(Box<SealedStream>),
    /// The handshake failed: nothing more is read or sent but what was
    /// queued (a refusal).
    Refused,
}

/// What the next frame read was.
#[derive(Debug)]
pub(crate) enum Inbound {
    /// A frame for the core. `first_proven`: it is the first frame that
    /// opened under the key (the peer just proved it holds it).
    Frame {
        frame: ToDirectory,
        first_proven: bool,
    },
    /// The peer's hello was answered with this directory's nonce: the
    /// answer is queued and wants writing.
    Answered,
}

/// Why a connection cannot go on.
#[derive(Debug, thiserror::Error)]
pub(crate) enum LinkError {
    #[error("malformed frame: {0}")]
    Malformed(#[from] DecodeError),
    /// The peer's hello was refused (unknown key, a plain peer, another
    /// version): `told` when a refusal was queued for it.
    #[error("key handshake refused: {err}")]
    Handshake { err: StreamError, told: bool },
    /// A sealed frame did not open.
    #[error("{0}")]
    Forged(StreamError),
    /// The system random source failed: no nonce, no handshake.
    #[error("the system random source failed; cannot answer the key handshake")]
    Random,
    /// A keyed daemon reached this insecure directory.
    #[error("it offers a cluster key, and this directory runs without one (insecure)")]
    KeyOffered,
}

/// A connection to one daemon.
#[derive(Debug)]
pub(crate) struct Connection {
    pub stream: TcpStream,
    pub peer: SocketAddr,
    frames: FrameBuffer,
    /// Encoded frames not yet written; `out[out_pos..]` is pending.
    out: Vec<u8>,
    out_pos: usize,
    /// Whether WRITABLE interest is registered (only while output is pending).
    pub write_interest: bool,
    /// Set once the core asked for the close: the connection is no longer
    /// read and goes away when its output is flushed or this passes.
    pub closing_deadline: Option<std::time::Instant>,
    /// A replica that does not lead sent this peer a Redirect: what the
    /// peer sends is read and dropped, and the connection stays until the
    /// peer closes it or `closing_deadline` passes. Closing first, with the
    /// peer's Hello unread, would reset the connection and could destroy
    /// the Redirect before the peer reads it. A plain daemon told that the
    /// directory requires the key is let go the same way.
    pub redirected: bool,
    /// Whether the core was told of this connection (`handle_connect`): in
    /// a keyed directory only once the peer proved it holds the key.
    pub known_to_core: bool,
    /// When the connection was accepted (for [`crate::HANDSHAKE_TIMEOUT`]).
    pub opened: std::time::Instant,
    seal: Seal,
    /// An opened frame's plain body.
    plain: Vec<u8>,
}

impl Connection {
    /// A connection; `keyed`: the directory holds a cluster key, so the
    /// peer must go through the handshake first.
    pub fn new(stream: TcpStream, peer: SocketAddr, keyed: bool) -> Self {
        // A sealed frame carries its tag besides the frame the limit is for.
        let max = DIRECTORY_FRAME_MAX_BYTES + if keyed { TAG_BYTES } else { 0 };
        Connection {
            stream,
            peer,
            frames: FrameBuffer::new(max),
            out: Vec::new(),
            out_pos: 0,
            write_interest: false,
            closing_deadline: None,
            redirected: false,
            known_to_core: false,
            opened: std::time::Instant::now(),
            seal: if keyed { Seal::AwaitHello } else { Seal::Plain },
            plain: Vec::new(),
        }
    }

    /// Whether the peer has shown it holds the cluster key (always, in an
    /// insecure directory: there is nothing to show).
    pub fn proven(&self) -> bool {
        match &self.seal {
            Seal::Plain => true,
            Seal::Sealed(s) => s.peer_proven(),
            Seal::AwaitHello | Seal::Refused => false,
        }
    }

    /// Reads and drops what the peer sent (see `redirected`).
    pub fn discard_input(&mut self, scratch: &mut [u8]) -> ReadOutcome {
        loop {
            match self.stream.read(scratch) {
                Ok(0) => return ReadOutcome::Closed,
                Ok(_) => {}
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return ReadOutcome::Drained,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return ReadOutcome::Failed(e),
            }
        }
    }

    /// Reads into the frame buffer until `WouldBlock` or until `budget`
    /// bytes were read; `scratch` is the read buffer.
    pub fn read(&mut self, scratch: &mut [u8], budget: usize) -> ReadOutcome {
        let mut total = 0;
        loop {
            if total >= budget {
                return ReadOutcome::BudgetSpent;
            }
            match self.stream.read(scratch) {
                Ok(0) => return ReadOutcome::Closed,
                Ok(n) => {
                    total += n;
                    self.frames.extend(&scratch[..n]);
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return ReadOutcome::Drained,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return ReadOutcome::Failed(e),
            }
        }
    }

    /// The next whole frame read: opened (in a keyed directory) and
    /// decoded, or the handshake's progress. `keys` is the directory's
    /// ring (`None`: insecure) and `rng` draws its handshake nonce. An
    /// error means the stream cannot be trusted any further: the caller
    /// drops the connection (after writing a refusal, if one was queued).
    pub fn next_frame(
        &mut self,
        keys: Option<&KeyRing>,
        rng: &dyn SecureRandom,
    ) -> Result<Option<Inbound>, LinkError> {
        let Some(body) = self.frames.next_frame()? else {
            return Ok(None);
        };
        match (&mut self.seal, keys) {
            (Seal::Plain, _) => {
                if is_from_keyed_peer(body) {
                    return Err(LinkError::KeyOffered);
                }
                Ok(Some(Inbound::Frame {
                    frame: ToDirectory::decode(body)?,
                    first_proven: false,
                }))
            }
            (Seal::AwaitHello, Some(keys)) => {
                let mut nonce = [0u8; STREAM_NONCE_BYTES];
                if rng.fill(&mut nonce).is_err() {
                    self.seal = Seal::Refused;
                    return Err(LinkError::Random);
                }
                let mut answer = Vec::new();
                match stream::accept(keys, body, StreamNonce(nonce), &mut answer) {
                    Ok(sealed) => {
                        self.seal = Seal::Sealed(Box::new(sealed));
                        self.queue_raw(&answer);
                        Ok(Some(Inbound::Answered))
                    }
                    Err(err) => {
                        self.seal = Seal::Refused;
                        let told = matches!(err, StreamError::Plain(_));
                        if told {
                            // A daemon without a key: tell it why, in clear.
                            let mut refusal = Vec::new();
                            stream::write_key_required(&mut refusal);
                            self.queue_raw(&refusal);
                        }
                        Err(LinkError::Handshake { err, told })
                    }
                }
            }
            (Seal::Sealed(sealed), _) => {
                let was_proven = sealed.peer_proven();
                sealed
                    .open_into(body, &mut self.plain)
                    .map_err(LinkError::Forged)?;
                Ok(Some(Inbound::Frame {
                    frame: ToDirectory::decode(&self.plain)?,
                    first_proven: !was_proven,
                }))
            }
            (Seal::AwaitHello, None) | (Seal::Refused, _) => Err(LinkError::Handshake {
                err: StreamError::Failed,
                told: false,
            }),
        }
    }

    /// Appends bytes already framed (the handshake's clear frames).
    fn queue_raw(&mut self, bytes: &[u8]) {
        self.out.extend_from_slice(bytes);
    }

    /// Appends a frame to the output buffer (sealed in a keyed directory).
    /// Nothing is queued for a peer that has not proven it holds the key:
    /// it is told nothing but the handshake's nonce.
    pub fn queue(&mut self, frame: &FromDirectory) -> Result<(), OutputFull> {
        if self.out_pos > 0 && self.out_pos == self.out.len() {
            self.out.clear();
            self.out_pos = 0;
        }
        let before = self.out.len();
        match &mut self.seal {
            Seal::Plain => write_frame(&mut self.out, |b| frame.encode(b)),
            Seal::Sealed(s) if s.peer_proven() => {
                if s.seal_frame(&mut self.out, |b| frame.encode(b)).is_err() {
                    // The stream is spent (2^64 frames): give the peer up.
                    return Err(OutputFull);
                }
            }
            Seal::Sealed(_) | Seal::AwaitHello | Seal::Refused => {
                log::error!(
                    "{}: a frame for a peer that has not proven it holds the cluster key; not sent",
                    self.peer
                );
                return Ok(());
            }
        }
        if self.out.len() - self.out_pos > OUTPUT_BUFFER_MAX_BYTES {
            self.out.truncate(before);
            return Err(OutputFull);
        }
        Ok(())
    }

    /// Bytes waiting to be written.
    pub fn pending_output(&self) -> usize {
        self.out.len() - self.out_pos
    }

    /// Writes pending output until done or `WouldBlock`.
    pub fn flush(&mut self) -> io::Result<()> {
        while self.out_pos < self.out.len() {
            match self.stream.write(&self.out[self.out_pos..]) {
                Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                Ok(n) => self.out_pos += n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        if self.out_pos == self.out.len() {
            self.out.clear();
            self.out_pos = 0;
        } else if self.out_pos > (1 << 20) {
            self.out.drain(..self.out_pos);
            self.out_pos = 0;
        }
        Ok(())
    }
}
