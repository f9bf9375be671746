//! One daemon's TCP connection at the edge: frame reassembly on the way in,
//! a bounded output buffer on the way out.

use chorus_proto::wire::directory::{FromDirectory, ToDirectory, DIRECTORY_FRAME_MAX_BYTES};
use chorus_proto::wire::frame::{write_frame, FrameBuffer};
use chorus_proto::wire::DecodeError;
use mio::net::TcpStream;
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
    /// the Redirect before the peer reads it.
    pub redirected: bool,
}

impl Connection {
    pub fn new(stream: TcpStream, peer: SocketAddr) -> Self {
        Connection {
            stream,
            peer,
            frames: FrameBuffer::new(DIRECTORY_FRAME_MAX_BYTES),
            out: Vec::new(),
            out_pos: 0,
            write_interest: false,
            closing_deadline: None,
            redirected: false,
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

    /// The next whole frame read, decoded. An error means the stream cannot
    /// be trusted any further: the caller drops the connection.
    pub fn next_frame(&mut self) -> Result<Option<ToDirectory>, DecodeError> {
        match self.frames.next_frame()? {
            None => Ok(None),
            Some(body) => ToDirectory::decode(body).map(Some),
        }
    }

    /// Appends a frame to the output buffer.
    pub fn queue(&mut self, frame: &FromDirectory) -> Result<(), OutputFull> {
        if self.out_pos > 0 && self.out_pos == self.out.len() {
            self.out.clear();
            self.out_pos = 0;
        }
        let before = self.out.len();
        write_frame(&mut self.out, |b| frame.encode(b));
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
