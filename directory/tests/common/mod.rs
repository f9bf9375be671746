//! A fake daemon for the edge tests: a blocking socket speaking the codec,
//! heartbeating while it waits so that short leases do not expire.

#![allow(dead_code)]

use chorus_proto::wire::directory::{
    FromDirectory, Resume, ToDirectory, View, DIRECTORY_FRAME_MAX_BYTES,
};
use chorus_proto::wire::frame::{write_frame, FrameBuffer};
use chorus_proto::{Incarnation, MemberId, NodeId};
use std::io::{ErrorKind, Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpStream};
use std::time::{Duration, Instant};

/// Longest wait for any frame.
pub const WAIT: Duration = Duration::from_secs(10);
/// How often a waiting fake daemon says Heartbeat.
const BEAT: Duration = Duration::from_millis(40);

/// One daemon's link to the directory.
pub struct FakeDaemon {
    pub name: String,
    pub incarnation: Incarnation,
    /// The directory closed the link.
    pub closed: bool,
    /// When this daemon last said something.
    last_beat: Instant,
    stream: TcpStream,
    frames: FrameBuffer,
}

impl FakeDaemon {
    /// Connects to the directory (nothing said yet).
    pub fn connect(addr: SocketAddr, name: &str, incarnation: u64) -> FakeDaemon {
        let stream = TcpStream::connect(addr).expect("connect");
        stream.set_read_timeout(Some(BEAT)).expect("timeout");
        FakeDaemon {
            name: name.into(),
            incarnation: Incarnation(incarnation),
            closed: false,
            last_beat: Instant::now(),
            stream,
            frames: FrameBuffer::new(DIRECTORY_FRAME_MAX_BYTES),
        }
    }

    pub fn send(&mut self, msg: &ToDirectory) {
        let mut out = Vec::new();
        write_frame(&mut out, |b| msg.encode(b));
        self.stream.write_all(&out).expect("send");
        self.last_beat = Instant::now();
    }

    /// The next frame, heartbeating meanwhile; None when the directory
    /// closed the link (`closed` is then set) or nothing came within
    /// `within`.
    pub fn recv_within(&mut self, within: Duration) -> Option<FromDirectory> {
        let start = Instant::now();
        loop {
            if let Some(body) = self.frames.next_frame().expect("frame") {
                return Some(FromDirectory::decode(body).expect("decode"));
            }
            if start.elapsed() >= within {
                return None;
            }
            if self.last_beat.elapsed() >= BEAT {
                // The link may be closing under us; the read tells.
                let mut out = Vec::new();
                write_frame(&mut out, |b| ToDirectory::Heartbeat.encode(b));
                let _ = self.stream.write_all(&out);
                self.last_beat = Instant::now();
            }
            let mut buf = [0u8; 4096];
            match self.stream.read(&mut buf) {
                Ok(0) => {
                    self.closed = true;
                    return None;
                }
                Ok(n) => self.frames.extend(&buf[..n]),
                // A read cut short (a timeout, or a signal: EINTR) is tried again.
                Err(e)
                    if matches!(
                        e.kind(),
                        ErrorKind::WouldBlock | ErrorKind::TimedOut | ErrorKind::Interrupted
                    ) => {}
                Err(e) if e.kind() == ErrorKind::ConnectionReset => {
                    self.closed = true;
                    return None;
                }
                Err(e) => panic!("read: {e}"),
            }
        }
    }

    /// The next frame (heartbeating), or None when the link closed.
    pub fn recv(&mut self) -> Option<FromDirectory> {
        self.recv_within(WAIT)
    }

    /// Says Hello (asking for `previous`, if any) and returns the Welcome's id.
    pub fn hello(&mut self, previous: impl Into<Option<NodeId>>) -> NodeId {
        self.send(&ToDirectory::Hello {
            name: self.name.clone(),
            incarnation: self.incarnation,
            ip: Ipv4Addr::LOCALHOST,
            data_port: 7401,
            order_port: 7402,
            previous: previous.into(),
            epoch: chorus_proto::Epoch(0),
        });
        match self.recv() {
            Some(FromDirectory::Welcome { node, .. }) => node,
            other => panic!("{}: expected Welcome, got {other:?}", self.name),
        }
    }

    pub fn join(&mut self, group: &str, member: u32, name: &str) {
        self.send(&ToDirectory::Join {
            group: group.into(),
            member: MemberId(member),
            member_name: name.into(),
            user: "alice".into(),
            unix_groups: vec![],
        });
    }

    /// Reports a group as this daemon knows it.
    pub fn resume(&mut self, v: &View, members: Vec<(MemberId, String)>) {
        self.send(&ToDirectory::Resume(Resume {
            group: v.group,
            group_name: v.group_name.clone(),
            address: v.address,
            port: v.port,
            view: v.view,
            sequencer: v.sequencer,
            since: v.view,
            members,
        }));
    }

    /// The next frame, which must be a View.
    pub fn view(&mut self) -> View {
        match self.recv() {
            Some(FromDirectory::View(v)) => v,
            other => panic!("{}: expected View, got {other:?}", self.name),
        }
    }

    /// Waits until the directory closes the link (views still queued for
    /// it may come first).
    pub fn expect_closed(&mut self) {
        loop {
            match self.recv() {
                None => {
                    assert!(self.closed, "{}: the link stayed open", self.name);
                    return;
                }
                Some(FromDirectory::View(_)) => {}
                Some(other) => panic!("{}: expected the close, got {other:?}", self.name),
            }
        }
    }
}

/// Keeps every daemon heartbeating for `span` and asserts that none of
/// them hears anything meanwhile (nor loses its link).
pub fn assert_quiet(daemons: &mut [&mut FakeDaemon], span: Duration) {
    let start = Instant::now();
    while start.elapsed() < span {
        for d in daemons.iter_mut() {
            let got = d.recv_within(BEAT);
            assert_eq!(got, None, "{}: expected nothing", d.name);
            assert!(!d.closed, "{}: link closed", d.name);
        }
    }
}

/// The next frame of each daemon, which must be a View, with every daemon
/// heartbeating while any waits.
pub fn next_views(daemons: &mut [&mut FakeDaemon]) -> Vec<View> {
    let start = Instant::now();
    let mut views: Vec<Option<View>> = daemons.iter().map(|_| None).collect();
    while views.iter().any(Option::is_none) {
        assert!(start.elapsed() < WAIT, "no view in time");
        for (d, slot) in daemons.iter_mut().zip(views.iter_mut()) {
            if slot.is_some() {
                if let Some(f) = d.recv_within(Duration::ZERO) {
                    panic!("{}: unexpected {f:?}", d.name);
                }
                continue;
            }
            match d.recv_within(BEAT) {
                Some(FromDirectory::View(v)) => *slot = Some(v),
                Some(other) => panic!("{}: expected View, got {other:?}", d.name),
                None => assert!(!d.closed, "{}: link closed", d.name),
            }
        }
    }
    views.into_iter().flatten().collect()
}
