//! The session with the daemon: blocking calls over one Unix stream.

use std::collections::{HashMap, VecDeque};
use std::fmt;
use std::io::{self, Read, Write};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::time::{Duration, Instant};

use chorus_proto::wire::app::{FromDaemon, ToDaemon, APP_FRAME_MAX_BYTES};
use chorus_proto::wire::frame::{write_frame, FrameBuffer};
use chorus_proto::Order;

use crate::error::{Error, ProtocolError};
use crate::event::{Event, GroupInfo, Stats, Status, ViewInfo};

/// Most sends that may be unanswered by the daemon before [`Client::send`]
/// waits for replies: enough to keep the daemon busy, small enough that a
/// refusal is reported soon after the send it belongs to.
pub const SEND_WINDOW: usize = 256;

/// Most payload bytes that may be unanswered (one larger send may still go
/// alone): bounds what sits in the socket while the daemon applies
/// back-pressure, so that its own queue towards us stays small.
pub const SEND_WINDOW_BYTES: usize = 4 << 20;

/// Buffered outgoing frames are written once they reach this size.
const OUT_FLUSH_BYTES: usize = 64 * 1024;

/// Bytes asked of the socket per read.
const READ_CHUNK_BYTES: usize = 64 * 1024;

/// Longest group or member name the wire carries (str8).
const NAME_MAX_BYTES: usize = u8::MAX as usize;

/// One session with the local daemon.
///
/// Every call blocks until it is done (see the crate doc for how sends are
/// pipelined). Dropping the client writes any buffered sends, best effort,
/// and closes the session; the daemon then removes its members from their
/// groups. Call [`Client::flush`] first to know the sends were accepted.
pub struct Client {
    stream: UnixStream,
    /// Frames not yet written.
    out: Vec<u8>,
    input: FrameBuffer,
    read_buf: Vec<u8>,
    events: VecDeque<Event>,
    discard_events: bool,
    next_request: u32,
    /// Sends the daemon has not answered yet: request number → payload bytes.
    unanswered_sends: HashMap<u32, usize>,
    /// Sum of the payload bytes in `unanswered_sends`.
    unanswered_bytes: usize,
    /// The one non-send request being waited for, and its reply once read.
    awaiting: Option<u32>,
    reply: Option<FromDaemon>,
    /// A refusal of an earlier send, returned by the next call.
    deferred: Option<Error>,
    /// Set after an I/O or protocol error or end of stream.
    closed: bool,
    /// Whether the stream currently has a read timeout set.
    read_timeout_set: bool,
}

impl fmt::Debug for Client {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Client")
            .field("stream", &self.stream)
            .field("buffered_bytes", &self.out.len())
            .field("queued_events", &self.events.len())
            .field("unanswered_sends", &self.unanswered_sends.len())
            .field("closed", &self.closed)
            .finish_non_exhaustive()
    }
}

impl Client {
    /// Connects to the daemon listening at `path`.
    pub fn connect(path: impl AsRef<Path>) -> Result<Client, Error> {
        let path = path.as_ref();
        let stream = UnixStream::connect(path).map_err(|source| Error::Connect {
            path: path.to_path_buf(),
            source,
        })?;
        Ok(Client::from_stream(stream))
    }

    fn from_stream(stream: UnixStream) -> Client {
        Client {
            stream,
            out: Vec::new(),
            input: FrameBuffer::new(APP_FRAME_MAX_BYTES),
            read_buf: vec![0; READ_CHUNK_BYTES],
            events: VecDeque::new(),
            discard_events: false,
            next_request: 1,
            unanswered_sends: HashMap::new(),
            unanswered_bytes: 0,
            awaiting: None,
            reply: None,
            deferred: None,
            closed: false,
            read_timeout_set: false,
        }
    }

    /// Connects to `$CHORUS_SOCKET`, or to [`crate::DEFAULT_SOCKET`] when unset.
    pub fn connect_default() -> Result<Client, Error> {
        Client::connect(crate::default_socket_path())
    }

    /// Joins `group` as member `name` (seen by others as `NODE:name`) and
    /// waits for the daemon's answer. The group's views and messages then
    /// arrive through [`Client::recv`]. A daemon whose directory does not
    /// answer refuses the join with [`crate::ErrorCode::Unavailable`] after
    /// 5 s, or two leases of a directory whose lease is longer (see the
    /// crate doc).
    pub fn join(&mut self, group: &str, name: &str) -> Result<(), Error> {
        check_name("group", group)?;
        check_name("member name", name)?;
        let request = self.request_id();
        let reply = self.call(ToDaemon::Join {
            request,
            group: group.to_owned(),
            name: name.to_owned(),
        })?;
        expect_ok(reply)
    }

    /// Leaves `group` and waits for the daemon to confirm. Events of the
    /// group already queued stay queued.
    pub fn leave(&mut self, group: &str) -> Result<(), Error> {
        check_name("group", group)?;
        let request = self.request_id();
        let reply = self.call(ToDaemon::Leave {
            request,
            group: group.to_owned(),
        })?;
        expect_ok(reply)
    }

    /// Sends `payload` to `group` (joined by this session) with delivery
    /// service `order`. Returns once the frame is buffered; see
    /// [`Client::flush`]. An `Err` here may belong to an earlier send, in
    /// which case this one was not sent.
    pub fn send(&mut self, group: &str, order: Order, payload: &[u8]) -> Result<(), Error> {
        self.ready()?;
        check_name("group", group)?;
        while self.window_full(payload.len()) {
            self.read_more(None)?;
            self.ready()?;
        }
        let request = self.request_id();
        self.queue(&ToDaemon::Send {
            request,
            group: group.to_owned(),
            order,
            payload: payload.to_vec(),
        })?;
        self.unanswered_sends.insert(request, payload.len());
        self.unanswered_bytes += payload.len();
        Ok(())
    }

    /// Whether a send of `bytes` must wait for replies first.
    fn window_full(&self, bytes: usize) -> bool {
        let n = self.unanswered_sends.len();
        n >= SEND_WINDOW || (n > 0 && self.unanswered_bytes + bytes > SEND_WINDOW_BYTES)
    }

    /// Waits until the daemon has answered every send made so far; returns
    /// the first refusal among them, if any.
    pub fn flush(&mut self) -> Result<(), Error> {
        self.ready()?;
        while !self.unanswered_sends.is_empty() {
            self.read_more(None)?;
        }
        self.ready()
    }

    /// Sends made but not yet answered by the daemon.
    pub fn unanswered_sends(&self) -> usize {
        self.unanswered_sends.len()
    }

    /// With `true`, views and messages are dropped as they arrive instead of
    /// being queued for [`Client::recv`] (already queued ones are dropped
    /// too): for sessions that only send, whose queue would otherwise grow
    /// with every message delivered back to them.
    pub fn discard_events(&mut self, discard: bool) {
        self.discard_events = discard;
        if discard {
            self.events.clear();
        }
    }

    /// The next view or message, waiting as long as it takes.
    pub fn recv(&mut self) -> Result<Event, Error> {
        loop {
            self.ready()?;
            if let Some(event) = self.events.pop_front() {
                return Ok(event);
            }
            self.read_more(None)?;
        }
    }

    /// The next view or message, or `None` if none arrives within `timeout`.
    pub fn recv_timeout(&mut self, timeout: Duration) -> Result<Option<Event>, Error> {
        // A timeout too long to add to the clock is no timeout at all.
        let deadline = Instant::now().checked_add(timeout);
        loop {
            self.ready()?;
            if let Some(event) = self.events.pop_front() {
                return Ok(Some(event));
            }
            if !self.read_more(deadline)? {
                return Ok(None);
            }
        }
    }

    /// The daemon's state.
    pub fn status(&mut self) -> Result<Status, Error> {
        let request = self.request_id();
        match self.call(ToDaemon::Status { request })? {
            FromDaemon::Status {
                node,
                node_id,
                incarnation,
                directory,
                connected,
                groups,
                members,
                version,
                ..
            } => Ok(Status {
                node,
                node_id,
                incarnation,
                directory,
                connected,
                groups,
                members,
                version,
            }),
            other => Err(unexpected("Status", &other)),
        }
    }

    /// The daemon's counters since it started, and its groups' send
    /// streams (see [`Stats`]).
    pub fn stats(&mut self) -> Result<Stats, Error> {
        let request = self.request_id();
        match self.call(ToDaemon::Stats { request })? {
            FromDaemon::Stats { stats, .. } => Ok((*stats).into()),
            other => Err(unexpected("Stats", &other)),
        }
    }

    /// Every group the daemon knows of.
    pub fn groups(&mut self) -> Result<Vec<GroupInfo>, Error> {
        let request = self.request_id();
        match self.call(ToDaemon::Groups { request })? {
            FromDaemon::Groups { groups, .. } => Ok(groups.into_iter().map(Into::into).collect()),
            other => Err(unexpected("Groups", &other)),
        }
    }

    /// The current view of `group` (which this session need not have joined).
    pub fn members(&mut self, group: &str) -> Result<ViewInfo, Error> {
        check_name("group", group)?;
        let request = self.request_id();
        match self.call(ToDaemon::Members {
            request,
            group: group.to_owned(),
        })? {
            FromDaemon::Members {
                group,
                view,
                members,
                sequencer,
                ..
            } => Ok(ViewInfo {
                group,
                view: view.0,
                members,
                sequencer,
            }),
            other => Err(unexpected("Members", &other)),
        }
    }

    fn request_id(&mut self) -> u32 {
        let id = self.next_request;
        self.next_request = self.next_request.wrapping_add(1);
        id
    }

    /// Fails if the session is over or an earlier send was refused.
    fn ready(&mut self) -> Result<(), Error> {
        if let Some(e) = self.deferred.take() {
            return Err(e);
        }
        if self.closed {
            return Err(Error::Closed);
        }
        Ok(())
    }

    /// Sends a request that is not a send and waits for its reply. A
    /// refusal reply becomes [`Error::Daemon`].
    fn call(&mut self, msg: ToDaemon) -> Result<FromDaemon, Error> {
        self.ready()?;
        let request = request_of_to(&msg);
        self.queue(&msg)?;
        self.awaiting = Some(request);
        let waited = self.wait_reply();
        self.awaiting = None;
        match waited? {
            FromDaemon::Error { code, message, .. } => Err(Error::Daemon { code, message }),
            reply => Ok(reply),
        }
    }

    fn wait_reply(&mut self) -> Result<FromDaemon, Error> {
        loop {
            if let Some(reply) = self.reply.take() {
                return Ok(reply);
            }
            self.read_more(None)?;
        }
    }

    /// Appends one frame to the output buffer, writing the buffer out once
    /// it is large.
    fn queue(&mut self, msg: &ToDaemon) -> Result<(), Error> {
        let at = self.out.len();
        write_frame(&mut self.out, |b| msg.encode(b));
        let body_bytes = self.out.len() - at - 4;
        if body_bytes > APP_FRAME_MAX_BYTES {
            self.out.truncate(at);
            return Err(Error::Invalid(format!(
                "a frame of {body_bytes} bytes exceeds the limit of {APP_FRAME_MAX_BYTES}"
            )));
        }
        if self.out.len() >= OUT_FLUSH_BYTES {
            self.write_out()?;
        }
        Ok(())
    }

    fn write_out(&mut self) -> Result<(), Error> {
        if self.out.is_empty() {
            return Ok(());
        }
        if let Err(e) = self.stream.write_all(&self.out) {
            self.closed = true;
            return Err(e.into());
        }
        self.out.clear();
        Ok(())
    }

    /// Writes buffered frames, then reads once (until `deadline`, if given)
    /// and handles every whole frame. False when the deadline passed first.
    fn read_more(&mut self, deadline: Option<Instant>) -> Result<bool, Error> {
        self.write_out()?;
        let n = match self.read_once(deadline) {
            Ok(n) => n,
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                ) =>
            {
                return Ok(false)
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => return Ok(true),
            Err(e) => {
                self.closed = true;
                return Err(e.into());
            }
        };
        if n == 0 {
            self.closed = true;
            return Err(Error::Closed);
        }
        self.input.extend(&self.read_buf[..n]);
        if let Err(e) = self.handle_input() {
            self.closed = true;
            return Err(e);
        }
        Ok(true)
    }

    fn read_once(&mut self, deadline: Option<Instant>) -> io::Result<usize> {
        let Some(deadline) = deadline else {
            if self.read_timeout_set {
                self.stream.set_read_timeout(None)?;
                self.read_timeout_set = false;
            }
            return self.stream.read(&mut self.read_buf);
        };
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            // A zero timeout is refused by the socket: poll without blocking.
            self.stream.set_nonblocking(true)?;
            let got = self.stream.read(&mut self.read_buf);
            self.stream.set_nonblocking(false)?;
            return got;
        }
        self.stream.set_read_timeout(Some(left))?;
        self.read_timeout_set = true;
        self.stream.read(&mut self.read_buf)
    }

    fn handle_input(&mut self) -> Result<(), Error> {
        while let Some(frame) = self.input.next_frame().map_err(ProtocolError::from)? {
            let msg = FromDaemon::decode(frame).map_err(ProtocolError::from)?;
            self.handle_frame(msg)?;
        }
        Ok(())
    }

    fn handle_frame(&mut self, msg: FromDaemon) -> Result<(), Error> {
        let reply = match Event::from_frame(msg) {
            Ok(event) => {
                if !self.discard_events {
                    self.events.push_back(event);
                }
                return Ok(());
            }
            Err(reply) => reply,
        };
        let Some(request) = request_of_from(&reply) else {
            return Err(unexpected("a reply", &reply));
        };
        if let Some(bytes) = self.unanswered_sends.remove(&request) {
            self.unanswered_bytes -= bytes;
            return match reply {
                FromDaemon::Ok { .. } => Ok(()),
                FromDaemon::Error { code, message, .. } => {
                    self.deferred.get_or_insert(Error::Daemon { code, message });
                    Ok(())
                }
                other => Err(unexpected("Ok or Error to a send", &other)),
            };
        }
        if self.awaiting == Some(request) && self.reply.is_none() {
            self.reply = Some(reply);
            return Ok(());
        }
        Err(ProtocolError::Unexpected(format!("a reply to unknown request {request}")).into())
    }
}

impl Drop for Client {
    fn drop(&mut self) {
        if !self.closed {
            let _ = self.write_out();
        }
    }
}

fn check_name(what: &str, name: &str) -> Result<(), Error> {
    if name.len() > NAME_MAX_BYTES {
        return Err(Error::Invalid(format!(
            "{what} of {} bytes is longer than {NAME_MAX_BYTES}",
            name.len()
        )));
    }
    Ok(())
}

fn expect_ok(reply: FromDaemon) -> Result<(), Error> {
    match reply {
        FromDaemon::Ok { .. } => Ok(()),
        other => Err(unexpected("Ok", &other)),
    }
}

fn unexpected(wanted: &str, got: &FromDaemon) -> Error {
    ProtocolError::Unexpected(format!("expected {wanted}, got {got:?}")).into()
}

fn request_of_to(msg: &ToDaemon) -> u32 {
    match msg {
        ToDaemon::Join { request, .. }
        | ToDaemon::Leave { request, .. }
        | ToDaemon::Send { request, .. }
        | ToDaemon::Status { request }
        | ToDaemon::Groups { request }
        | ToDaemon::Stats { request }
        | ToDaemon::Members { request, .. } => *request,
    }
}

/// The request a reply answers; None for views and messages.
fn request_of_from(msg: &FromDaemon) -> Option<u32> {
    match msg {
        FromDaemon::Ok { request }
        | FromDaemon::Error { request, .. }
        | FromDaemon::Status { request, .. }
        | FromDaemon::Groups { request, .. }
        | FromDaemon::Stats { request, .. }
        | FromDaemon::Members { request, .. } => Some(*request),
        FromDaemon::View { .. } | FromDaemon::Message { .. } | FromDaemon::Separated { .. } => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Bytes the daemon end can read without waiting.
    fn pending(daemon: &mut UnixStream) -> usize {
        daemon.set_nonblocking(true).expect("nonblocking");
        let mut buf = vec![0u8; 1 << 20];
        let mut total = 0;
        loop {
            match daemon.read(&mut buf) {
                Ok(0) => return total,
                Ok(n) => total += n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return total,
                Err(e) => panic!("read: {e}"),
            }
        }
    }

    #[test]
    fn small_sends_are_written_together_once_the_buffer_fills() {
        let (ours, mut daemon) = UnixStream::pair().expect("pair");
        let mut c = Client::from_stream(ours);
        let payload = [7u8; 1000]; // few enough per buffer to stay inside the send window
        let mut frame = Vec::new();
        write_frame(&mut frame, |b| {
            ToDaemon::Send {
                request: 1,
                group: "g".into(),
                order: Order::Total,
                payload: payload.to_vec(),
            }
            .encode(b)
        });
        let per_buffer = OUT_FLUSH_BYTES.div_ceil(frame.len());
        assert!(per_buffer < SEND_WINDOW);
        for _ in 0..per_buffer - 1 {
            c.send("g", Order::Total, &payload).expect("send");
        }
        assert_eq!(
            pending(&mut daemon),
            0,
            "nothing written before the buffer fills"
        );
        c.send("g", Order::Total, &payload).expect("send");
        assert_eq!(pending(&mut daemon), per_buffer * frame.len());
        c.send("g", Order::Total, &payload).expect("send");
        drop(c);
        assert_eq!(
            pending(&mut daemon),
            frame.len(),
            "drop writes what is buffered"
        );
    }
}
