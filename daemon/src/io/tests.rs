//! The IO loop against a fake directory and many local apps, on a clock the
//! test drives: every look at the clock finds it `STEP` later, as in a
//! daemon so busy that each batch of input it handles takes that long.

use super::*;
use chorus_proto::host::HostSettings;
use chorus_proto::wire::directory::DIRECTORY_FRAME_MAX_BYTES;
use chorus_proto::wire::frame::FrameBuffer;
use chorus_proto::{ClusterId, Duration as CoreDuration, Incarnation, NodeId};
use std::io::{Read, Write};
use std::net::TcpListener;
use std::os::unix::net::UnixStream;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

/// What each look at the clock costs.
const STEP: Duration = Duration::from_millis(10);
const LEASE_MS: u32 = 1500;
const HEARTBEAT_MS: u32 = LEASE_MS / 4;
/// Local apps with a request waiting: each is one batch of input.
const APPS: usize = 60;
/// How long a socket operation may block before the test gives up (a
/// safety net: every wait below ends as soon as the bytes are there).
const IO_LIMIT: Duration = Duration::from_secs(10);

/// The test's clock: `base` plus microseconds that grow by `STEP` at each
/// read, or are set by the test.
struct TestClock {
    base: Instant,
    micros: Arc<AtomicU64>,
}

impl TestClock {
    /// A clock that starts a second after now: past every deadline the
    /// daemon sets from the system clock while it is built.
    fn new() -> TestClock {
        TestClock {
            base: Instant::now(),
            micros: Arc::new(AtomicU64::new(1_000_000)),
        }
    }

    fn clock(&self) -> Clock {
        let (base, micros) = (self.base, Arc::clone(&self.micros));
        let step = STEP.as_micros() as u64;
        Box::new(move || base + Duration::from_micros(micros.fetch_add(step, Ordering::SeqCst)))
    }

    /// Sets the clock to the core's instant `t` (the core counts from `base`).
    fn set(&self, t: CoreInstant) {
        self.micros.store(t.as_micros(), Ordering::SeqCst);
    }
}

/// A directory that accepts one link, welcomes it, and reads its frames.
struct FakeDirectory {
    listener: TcpListener,
    conn: Option<std::net::TcpStream>,
    frames: FrameBuffer,
}

impl FakeDirectory {
    fn new() -> FakeDirectory {
        FakeDirectory {
            listener: TcpListener::bind("127.0.0.1:0").expect("bind the fake directory"),
            conn: None,
            frames: FrameBuffer::new(DIRECTORY_FRAME_MAX_BYTES),
        }
    }

    fn addr(&self) -> SocketAddr {
        self.listener.local_addr().expect("local address")
    }

    fn accept(&mut self) {
        let (s, _) = self.listener.accept().expect("the daemon connects");
        s.set_read_timeout(Some(IO_LIMIT)).expect("read timeout");
        self.conn = Some(s);
    }

    /// The next frame the daemon sent (blocks until it is here).
    fn next(&mut self) -> ToDirectory {
        let conn = self.conn.as_mut().expect("accepted");
        loop {
            if let Some(body) = self.frames.next_frame().expect("a valid frame") {
                return ToDirectory::decode(body).expect("a frame that decodes");
            }
            let mut chunk = [0u8; 4096];
            let n = conn.read(&mut chunk).expect("the daemon's frames");
            assert!(n > 0, "the daemon closed its directory link");
            self.frames.extend(&chunk[..n]);
        }
    }

    fn send(&mut self, frame: &FromDirectory) {
        let mut out = Vec::new();
        write_frame(&mut out, |b| frame.encode(b));
        let conn = self.conn.as_mut().expect("accepted");
        conn.write_all(&out).expect("write to the daemon");
    }
}

fn host(name: &str, data_port: u16, order_port: u16) -> Host {
    Host::new(HostSettings {
        node_name: name.into(),
        incarnation: Incarnation(1),
        ip: Ipv4Addr::LOCALHOST,
        data_port,
        order_port,
        max_datagram_bytes: 1400,
        max_message_bytes: 1 << 20,
        send_window_messages: 64,
        receive_window_messages: 64,
        ack_interval: CoreDuration::from_millis(5),
        retransmit: CoreDuration::from_millis(30),
        flow_budget_bytes: 1 << 20,
        directory_label: String::new(),
        version: "test".into(),
    })
}

struct Rig {
    daemon: Daemon,
    dir: FakeDirectory,
    clock: TestClock,
    socket: PathBuf,
    events: Events,
}

impl Drop for Rig {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.socket);
    }
}

impl Rig {
    /// A daemon registered with the fake directory as node 1.
    fn welcomed(name: &str) -> Rig {
        let socket =
            std::env::temp_dir().join(format!("chorusd-io-{name}-{}.sock", std::process::id()));
        let _ = std::fs::remove_file(&socket);
        let listener = std::os::unix::net::UnixListener::bind(&socket).expect("app socket");
        let data = sockets::sending_socket(Ipv4Addr::LOCALHOST, 0).expect("data socket");
        let order = sockets::sending_socket(Ipv4Addr::LOCALHOST, 0).expect("order socket");
        let port = |s: &std::net::UdpSocket| s.local_addr().expect("bound").port();
        let host = host(name, port(&data), port(&order));
        let dir = FakeDirectory::new();
        let clock = TestClock::new();
        let edge = EdgeSettings {
            interface: Ipv4Addr::LOCALHOST,
            session_queue_bytes: 1 << 20,
        };
        let mut daemon = Daemon::new(
            host,
            clock.base,
            edge,
            listener,
            data,
            order,
            vec![dir.addr()],
            None,
        )
        .expect("daemon");
        daemon.set_clock(clock.clock());
        let mut rig = Rig {
            daemon,
            dir,
            clock,
            socket,
            events: Events::with_capacity(1024),
        };
        // Connect, say Hello, be welcomed.
        rig.turn(Duration::ZERO);
        assert_eq!(rig.daemon.link.state(), LinkState::Connecting);
        rig.dir.accept();
        while rig.daemon.link.state() != LinkState::Up {
            rig.turn(IO_LIMIT);
        }
        assert!(matches!(rig.dir.next(), ToDirectory::Hello { .. }));
        rig.dir.send(&FromDirectory::Welcome {
            node: NodeId(1),
            cluster: ClusterId(7),
            lease_ms: LEASE_MS,
            heartbeat_ms: HEARTBEAT_MS,
            epoch: chorus_proto::Epoch(0),
        });
        while rig.daemon.host.node().is_none() {
            rig.turn(IO_LIMIT);
        }
        rig
    }

    fn turn(&mut self, timeout: Duration) {
        self.daemon
            .turn(&mut self.events, Some(timeout))
            .expect("a turn of the loop");
    }

    /// When the next heartbeat is due.
    fn heartbeat_due(&self) -> CoreInstant {
        self.daemon
            .driver
            .poll_timeout()
            .expect("heartbeats scheduled")
    }
}

/// A Status request, ready to write.
fn status_request(request: u32) -> Vec<u8> {
    let mut out = Vec::new();
    write_frame(&mut out, |b| ToDaemon::Status { request }.encode(b));
    out
}

/// How late the latest heartbeat went out, in whole steps (clock reads).
fn late_steps(d: &Daemon) -> u128 {
    d.heartbeat_late_max.as_micros() / STEP.as_micros()
}

/// The directory's next frame is a heartbeat, sent at most two steps late.
fn assert_heartbeat_on_time(rig: &mut Rig) {
    let lease = Duration::from_millis(u64::from(LEASE_MS));
    assert_eq!(rig.dir.next(), ToDirectory::Heartbeat);
    assert!(
        late_steps(&rig.daemon) < 3,
        "a heartbeat went out {} steps late ({:?}; the lease is {lease:?})",
        late_steps(&rig.daemon),
        rig.daemon.heartbeat_late_max
    );
}

#[test]
fn a_due_heartbeat_goes_out_before_a_backlog_of_input_and_between_its_batches() {
    let mut rig = Rig::welcomed("backlog");

    // Many apps connect, each with a request waiting, while the heartbeat
    // is due: the loop has one batch of input per app to handle.
    let mut apps: Vec<UnixStream> = (0..APPS)
        .map(|_| UnixStream::connect(&rig.socket).expect("app connects"))
        .collect();
    for (i, app) in apps.iter_mut().enumerate() {
        app.write_all(&status_request(i as u32)).expect("request");
    }
    rig.clock.set(rig.heartbeat_due());
    rig.turn(IO_LIMIT);
    assert_eq!(rig.daemon.sessions.len(), APPS, "every app accepted");
    assert_heartbeat_on_time(&mut rig);

    // Every app sends again, and the next heartbeat falls due while the
    // loop works through them: it goes out between two batches.
    for (i, app) in apps.iter_mut().enumerate() {
        app.write_all(&status_request((APPS + i) as u32))
            .expect("request");
    }
    let due = rig.heartbeat_due();
    rig.clock.set(CoreInstant::from_micros(
        due.as_micros() - 10 * STEP.as_micros() as u64,
    ));
    rig.turn(IO_LIMIT);
    assert_heartbeat_on_time(&mut rig);

    // Both rounds were answered.
    for app in &mut apps {
        app.set_read_timeout(Some(IO_LIMIT)).expect("read timeout");
        let mut frames = FrameBuffer::new(1 << 20);
        let mut replies = 0;
        while replies < 2 {
            match frames.next_frame().expect("a valid frame") {
                Some(body) => {
                    let reply = FromDaemon::decode(body).expect("a reply");
                    assert!(matches!(reply, FromDaemon::Status { .. }), "{reply:?}");
                    replies += 1;
                }
                None => {
                    let mut chunk = [0u8; 4096];
                    let n = app.read(&mut chunk).expect("replies");
                    assert!(n > 0, "the daemon closed the session");
                    frames.extend(&chunk[..n]);
                }
            }
        }
    }
}
