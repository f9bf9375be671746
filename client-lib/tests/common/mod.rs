//! A fake chorusd for tests: a Unix listener speaking the app frames, with
//! in-memory groups on one node "host-a". Messages sent to a group are
//! queued (before the sender's Ok) to every member connection, so once a
//! sender's flush returns, every member will read the message before the
//! reply to any request it makes afterwards.
#![allow(dead_code)]

use std::collections::{BTreeMap, HashMap};
use std::io::{Read, Write};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{mpsc, Arc, Condvar, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::Duration;

use chorus_proto::wire::app::{
    Counters, DaemonStats, ErrorCode, FromDaemon, GroupLine, GroupStats, ToDaemon,
    APP_FRAME_MAX_BYTES,
};
use chorus_proto::wire::frame::{write_frame, FrameBuffer};
use chorus_proto::{Order, ViewId};

pub const NODE: &str = "host-a";
/// Payload the fake refuses with [`ErrorCode::Refused`].
pub const REJECTED_PAYLOAD: &[u8] = b"reject";
/// A bound on waiting for something the test expects to happen.
pub const PATIENCE: Duration = Duration::from_secs(20);

static NEXT_DIR: AtomicU64 = AtomicU64::new(0);

/// A fresh directory for one socket, removed on drop.
pub struct TempDir(pub PathBuf);

impl TempDir {
    pub fn new() -> TempDir {
        let n = NEXT_DIR.fetch_add(1, Ordering::Relaxed);
        let dir = std::env::temp_dir().join(format!("chorus-test-{}-{n}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        TempDir(dir)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

struct Group {
    address: String,
    view: u64,
    /// (connection, member name), in join order.
    members: Vec<(u64, String)>,
    seq: u64,
}

/// A client connection. Frames to it go through its own writer thread, so
/// that, like the real daemon, the fake never blocks on a client that is
/// busy writing.
struct Conn {
    out: mpsc::Sender<Vec<u8>>,
    stream: UnixStream,
}

#[derive(Default)]
struct State {
    conns: HashMap<u64, Conn>,
    groups: BTreeMap<String, Group>,
    /// Every request received, with its connection.
    log: Vec<(u64, ToDaemon)>,
    /// Send requests whose Ok is being held, per connection.
    held: HashMap<u64, Vec<u32>>,
    max_held: usize,
    /// As a daemon whose directory is unreachable: status says not
    /// connected, joins and listings are refused as Unavailable.
    directory_down: bool,
    /// Leaves are refused as Unavailable (a directory that stopped answering
    /// after the join).
    leave_unavailable: bool,
}

struct Shared {
    state: Mutex<State>,
    changed: Condvar,
    /// Hold send replies until this many are unanswered on a connection.
    hold_send_replies: Option<usize>,
}

/// The fake daemon; stops accepting on drop.
pub struct FakeDaemon {
    dir: TempDir,
    path: PathBuf,
    shared: Arc<Shared>,
    stop: Arc<AtomicBool>,
    accept: Option<JoinHandle<()>>,
}

impl FakeDaemon {
    /// Groups "chat" and "news" exist, empty, in view 0.
    pub fn start() -> FakeDaemon {
        FakeDaemon::start_with(None)
    }

    /// Like [`FakeDaemon::start`], but Ok replies to sends are held until
    /// `hold` sends of a connection are unanswered (or it makes another request).
    pub fn start_with(hold: Option<usize>) -> FakeDaemon {
        let dir = TempDir::new();
        let path = dir.0.join("chorusd.sock");
        let listener = UnixListener::bind(&path).unwrap();
        let mut state = State::default();
        for (name, address) in [("chat", "239.192.0.10:7410"), ("news", "239.192.0.11:7410")] {
            state.groups.insert(name.into(), Group::new(address));
        }
        let shared = Arc::new(Shared {
            state: Mutex::new(state),
            changed: Condvar::new(),
            hold_send_replies: hold,
        });
        let stop = Arc::new(AtomicBool::new(false));
        let accept = {
            let (shared, stop) = (shared.clone(), stop.clone());
            std::thread::spawn(move || accept_loop(listener, shared, stop))
        };
        FakeDaemon {
            dir,
            path,
            shared,
            stop,
            accept: Some(accept),
        }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Refuses leaves as Unavailable (or not).
    pub fn set_leave_unavailable(&self, on: bool) {
        self.lock().leave_unavailable = on;
    }

    /// Acts as a daemon whose directory is unreachable (or reachable again).
    pub fn set_directory_down(&self, down: bool) {
        self.lock().directory_down = down;
    }

    /// Every request received so far.
    pub fn requests(&self) -> Vec<ToDaemon> {
        self.lock().log.iter().map(|(_, r)| r.clone()).collect()
    }

    /// Most send replies held at once on one connection.
    pub fn max_held(&self) -> usize {
        self.lock().max_held
    }

    /// Waits until `pred` holds for the requests received (bounded by [`PATIENCE`]).
    pub fn wait_for_request(&self, what: &str, pred: impl Fn(&ToDaemon) -> bool) {
        let mut st = self.lock();
        let deadline = std::time::Instant::now() + PATIENCE;
        while !st.log.iter().any(|(_, r)| pred(r)) {
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            assert!(!left.is_zero(), "fake daemon never received {what}");
            st = self.shared.changed.wait_timeout(st, left).unwrap().0;
        }
    }

    /// Shuts every client connection down, as a dying daemon would.
    pub fn disconnect_all(&self) {
        for c in self.lock().conns.values() {
            let _ = c.stream.shutdown(std::net::Shutdown::Both);
        }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.shared.state.lock().unwrap()
    }
}

impl Drop for FakeDaemon {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        let _ = UnixStream::connect(&self.path);
        if let Some(h) = self.accept.take() {
            let _ = h.join();
        }
        let _ = &self.dir;
    }
}

impl Group {
    fn new(address: &str) -> Group {
        Group {
            address: address.into(),
            view: 0,
            members: Vec::new(),
            seq: 0,
        }
    }

    fn member_names(&self) -> Vec<String> {
        self.members
            .iter()
            .map(|(_, n)| format!("{NODE}:{n}"))
            .collect()
    }
}

fn accept_loop(listener: UnixListener, shared: Arc<Shared>, stop: Arc<AtomicBool>) {
    let mut next_conn = 1u64;
    for stream in listener.incoming() {
        if stop.load(Ordering::SeqCst) {
            return;
        }
        let Ok(stream) = stream else { continue };
        let conn = next_conn;
        next_conn += 1;
        let (out, frames) = mpsc::channel::<Vec<u8>>();
        let mut writer = stream.try_clone().unwrap();
        std::thread::spawn(move || {
            for frame in frames {
                if writer.write_all(&frame).is_err() {
                    return;
                }
            }
        });
        let stream_ref = stream.try_clone().unwrap();
        shared.state.lock().unwrap().conns.insert(
            conn,
            Conn {
                out,
                stream: stream_ref,
            },
        );
        let shared = shared.clone();
        std::thread::spawn(move || serve(conn, stream, &shared));
    }
}

fn serve(conn: u64, mut stream: UnixStream, shared: &Shared) {
    let mut frames = FrameBuffer::new(APP_FRAME_MAX_BYTES);
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let n = match stream.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        frames.extend(&buf[..n]);
        while let Some(frame) = frames.next_frame().unwrap() {
            let req = ToDaemon::decode(frame).unwrap();
            let mut st = shared.state.lock().unwrap();
            st.log.push((conn, req.clone()));
            handle(&mut st, conn, req, shared.hold_send_replies);
            shared.changed.notify_all();
        }
    }
    let mut st = shared.state.lock().unwrap();
    st.conns.remove(&conn);
    let joined: Vec<String> = st
        .groups
        .iter()
        .filter(|(_, g)| g.members.iter().any(|(c, _)| *c == conn))
        .map(|(n, _)| n.clone())
        .collect();
    for group in joined {
        remove_member(&mut st, conn, &group);
    }
    shared.changed.notify_all();
}

fn send_to(st: &mut State, conn: u64, msg: &FromDaemon) {
    let mut out = Vec::new();
    write_frame(&mut out, |b| msg.encode(b));
    if let Some(c) = st.conns.get(&conn) {
        let _ = c.out.send(out);
    }
}

fn error(request: u32, code: ErrorCode, message: &str) -> FromDaemon {
    FromDaemon::Error {
        request,
        code,
        message: message.into(),
    }
}

/// Sends the group's current view to every member.
fn announce_view(st: &mut State, group: &str) {
    let g = &st.groups[group];
    let view = FromDaemon::View {
        group: group.into(),
        view: ViewId(g.view),
        members: g.member_names(),
        sequencer: NODE.into(),
    };
    let conns: Vec<u64> = g.members.iter().map(|(c, _)| *c).collect();
    for c in conns {
        send_to(st, c, &view);
    }
}

fn remove_member(st: &mut State, conn: u64, group: &str) {
    if let Some(g) = st.groups.get_mut(group) {
        g.members.retain(|(c, _)| *c != conn);
        g.view += 1;
        announce_view(st, group);
    }
}

fn release_held(st: &mut State, conn: u64) {
    for request in st.held.remove(&conn).unwrap_or_default() {
        send_to(st, conn, &FromDaemon::Ok { request });
    }
}

fn handle(st: &mut State, conn: u64, req: ToDaemon, hold: Option<usize>) {
    if !matches!(req, ToDaemon::Send { .. }) {
        release_held(st, conn);
    }
    if st.directory_down {
        match req {
            ToDaemon::Join { request, .. } | ToDaemon::Groups { request } => {
                let refusal = error(request, ErrorCode::Unavailable, "directory unreachable");
                return send_to(st, conn, &refusal);
            }
            _ => {}
        }
    }
    let reply = match req {
        ToDaemon::Join {
            request,
            group,
            name,
        } => return join(st, conn, request, &group, name),
        ToDaemon::Leave { request, .. } if st.leave_unavailable => {
            let refusal = error(request, ErrorCode::Unavailable, "directory unreachable");
            return send_to(st, conn, &refusal);
        }
        ToDaemon::Leave { request, group } => return leave(st, conn, request, &group),
        ToDaemon::Send {
            request,
            group,
            order,
            payload,
        } => return deliver(st, conn, request, &group, order, payload, hold),
        ToDaemon::Status { request } => FromDaemon::Status {
            request,
            node: NODE.into(),
            node_id: 1,
            incarnation: 77,
            directory: "127.0.0.1:7400".into(),
            connected: !st.directory_down,
            groups: st.groups.values().filter(|g| !g.members.is_empty()).count() as u32,
            members: st.groups.values().map(|g| g.members.len() as u32).sum(),
            version: "0.1.0-fake".into(),
        },
        ToDaemon::Groups { request } => FromDaemon::Groups {
            request,
            groups: st
                .groups
                .iter()
                .map(|(name, g)| GroupLine {
                    name: name.clone(),
                    address: g.address.clone(),
                    view: ViewId(g.view),
                    members: g.members.len() as u32,
                    local: !g.members.is_empty(),
                })
                .collect(),
        },
        ToDaemon::Stats { request } => {
            // Every message sent was accepted and delivered once; the joined
            // groups have fixed windows and nothing in flight.
            let sent: u64 = st.groups.values().map(|g| g.seq).sum();
            FromDaemon::Stats {
                request,
                stats: Box::new(DaemonStats {
                    counters: Counters {
                        messages_accepted: sent,
                        messages_delivered: sent,
                        ..Counters::default()
                    },
                    groups: st
                        .groups
                        .iter()
                        .filter(|(_, g)| !g.members.is_empty())
                        .map(|(name, g)| GroupStats {
                            name: name.clone(),
                            view: ViewId(g.view),
                            sequencer: true,
                            queued: 0,
                            in_flight_bytes: 0,
                            window_bytes: 65536,
                            window_cap_bytes: 131072,
                        })
                        .collect(),
                }),
            }
        }
        ToDaemon::Members { request, group } => match st.groups.get(&group) {
            Some(g) => FromDaemon::Members {
                request,
                group,
                view: ViewId(g.view),
                members: g.member_names(),
                sequencer: NODE.into(),
            },
            None => error(request, ErrorCode::NoSuchGroup, "no such group"),
        },
    };
    send_to(st, conn, &reply);
}

fn leave(st: &mut State, conn: u64, request: u32, group: &str) {
    let joined = st
        .groups
        .get(group)
        .is_some_and(|g| g.members.iter().any(|(c, _)| *c == conn));
    if !joined {
        return send_to(
            st,
            conn,
            &error(request, ErrorCode::NoSuchGroup, "not joined"),
        );
    }
    send_to(st, conn, &FromDaemon::Ok { request });
    remove_member(st, conn, group);
}

/// Delivers a message to every member of the group (the sender too), then
/// replies to the sender, or holds the reply.
fn deliver(
    st: &mut State,
    conn: u64,
    request: u32,
    group: &str,
    order: Order,
    payload: Vec<u8>,
    hold: Option<usize>,
) {
    let Some(g) = st.groups.get_mut(group) else {
        return send_to(
            st,
            conn,
            &error(request, ErrorCode::NoSuchGroup, "no group"),
        );
    };
    let Some((_, name)) = g.members.iter().find(|(c, _)| *c == conn) else {
        return send_to(
            st,
            conn,
            &error(request, ErrorCode::BadRequest, "not joined"),
        );
    };
    if payload == REJECTED_PAYLOAD {
        return send_to(
            st,
            conn,
            &error(request, ErrorCode::Refused, "rejected by the fake"),
        );
    }
    g.seq += 1;
    let msg = FromDaemon::Message {
        group: group.into(),
        view: ViewId(g.view),
        sender: format!("{NODE}:{name}").into(),
        order,
        seq: g.seq,
        payload: payload.into(),
    };
    let conns: Vec<u64> = g.members.iter().map(|(c, _)| *c).collect();
    for c in conns {
        send_to(st, c, &msg);
    }
    let Some(hold) = hold else {
        return send_to(st, conn, &FromDaemon::Ok { request });
    };
    let held = st.held.entry(conn).or_default();
    held.push(request);
    let n = held.len();
    st.max_held = st.max_held.max(n);
    if n >= hold {
        release_held(st, conn);
    }
}

/// Joins (creating the group on first join); replies Ok, then announces the view.
fn join(st: &mut State, conn: u64, request: u32, group: &str, name: String) {
    let g = st
        .groups
        .entry(group.into())
        .or_insert_with(|| Group::new("239.192.100.1:7420"));
    if g.members.iter().any(|(c, n)| *n == name || *c == conn) {
        return send_to(st, conn, &error(request, ErrorCode::Refused, "name in use"));
    }
    g.members.push((conn, name));
    g.view += 1;
    send_to(st, conn, &FromDaemon::Ok { request });
    announce_view(st, group);
}
