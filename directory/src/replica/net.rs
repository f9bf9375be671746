//! Raft between replicas: length-prefixed JSON frames over TCP.
//!
//! Each frame is a u32 big-endian length, then a JSON [`Envelope`]. The
//! envelope says which protocol version and cluster the sender runs and
//! which replica it is; a peer of another version or cluster, or one that
//! sends something that does not decode, is logged (rate-limited) and its
//! connection closed: it never reaches Raft and never stops this replica.
//! A client keeps one connection per peer and reconnects on any error;
//! each RPC is bounded by the timeout openraft gives it.
//!
//! With a cluster key, each connection starts with the handshake of
//! [`chorus_proto::wire::seal::stream`] and every frame after it is sealed
//! ([`Link`]): a request is handed to Raft only once it opened under the
//! key, so a process without the key can neither vote nor append, and a
//! reply is believed only once it opened. A keyed replica and an insecure
//! one refuse each other with a log line naming the mismatch.

use super::types::TypeConfig;
use chorus_proto::wire::seal::stream::{
    self, is_from_keyed_peer, ClientHandshake, SealedStream, StreamError, StreamNonce,
    HANDSHAKE_BYTES, STREAM_NONCE_BYTES,
};
use chorus_proto::wire::seal::{KeyRing, TAG_BYTES};
use openraft::error::{InstallSnapshotError, NetworkError, RPCError, RaftError, Unreachable};
use openraft::network::{RPCOption, RaftNetwork, RaftNetworkFactory};
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, InstallSnapshotRequest, InstallSnapshotResponse,
    VoteRequest, VoteResponse,
};
use openraft::{BasicNode, Raft};
use ring::rand::SecureRandom;
use serde::{Deserialize, Serialize};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

type NodeId = u64;

/// Version of the replica-to-replica protocol; a peer of another version
/// is refused (rolling upgrades change every replica's binary in turn, and
/// a cluster of mixed versions would not agree on what a frame means).
pub const RAFT_WIRE_VERSION: u32 = 1;
/// Longest frame accepted from a peer.
const FRAME_MAX_BYTES: u32 = 16 << 20;
/// How long a connection attempt to a peer may take.
const CONNECT_TIMEOUT: Duration = Duration::from_millis(300);
/// How long an accepted peer may take over its key handshake.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(5);
/// Warnings about bad peers logged before they are only counted.
const BAD_PEER_WARNINGS: u32 = 20;

/// What every frame carries besides its message.
#[derive(Debug, Serialize, Deserialize)]
struct Envelope<T> {
    version: u32,
    cluster: u32,
    from: NodeId,
    body: T,
}

/// An envelope's header alone: read first, so that a peer of another
/// version is told so even if its requests do not decode here.
#[derive(Debug, Deserialize)]
struct Header {
    version: u32,
    cluster: u32,
    from: NodeId,
}

#[derive(Debug, Serialize, Deserialize)]
enum Request {
    Append(AppendEntriesRequest<TypeConfig>),
    Vote(VoteRequest<NodeId>),
    Snapshot(InstallSnapshotRequest<TypeConfig>),
}

#[derive(Debug, Serialize, Deserialize)]
enum Reply {
    Append(Result<AppendEntriesResponse<NodeId>, RaftError<NodeId>>),
    Vote(Result<VoteResponse<NodeId>, RaftError<NodeId>>),
    Snapshot(Result<InstallSnapshotResponse<NodeId>, RaftError<NodeId, InstallSnapshotError>>),
    /// The request was refused before reaching Raft (version, cluster).
    Refused(String),
}

/// Who this replica is on the wire.
#[derive(Debug, Clone, Copy)]
pub struct Identity {
    pub cluster: u32,
    pub id: NodeId,
}

fn invalid(why: String) -> std::io::Error {
    std::io::Error::new(std::io::ErrorKind::InvalidData, why)
}

/// Reads one frame body of at most `max` bytes.
async fn read_raw(s: &mut TcpStream, max: u32) -> std::io::Result<Vec<u8>> {
    let mut len = [0u8; 4];
    s.read_exact(&mut len).await?;
    let len = u32::from_be_bytes(len);
    if len > max {
        return Err(invalid(format!("frame of {len} bytes, over {max}")));
    }
    let mut body = vec![0u8; len as usize];
    s.read_exact(&mut body).await?;
    Ok(body)
}

/// Draws a handshake nonce from the system's random source.
fn draw_nonce() -> std::io::Result<StreamNonce> {
    let mut n = [0u8; STREAM_NONCE_BYTES];
    ring::rand::SystemRandom::new()
        .fill(&mut n)
        .map_err(|_| std::io::Error::other("the system random source failed"))?;
    Ok(StreamNonce(n))
}

/// A connection to or from a peer: plain frames in an insecure cluster,
/// sealed ones after the handshake in a keyed one (the async edge over the
/// sans-IO [`SealedStream`]).
#[derive(Debug)]
pub(crate) struct Link {
    stream: TcpStream,
    seal: Option<SealedStream>,
}

impl Link {
    /// Connects the handshake on `stream` as the connecting side (none
    /// without `keys`). The peer has proven nothing until a reply opened.
    async fn connect(
        mut stream: TcpStream,
        keys: Option<&KeyRing>,
        peer: &str,
    ) -> std::io::Result<Link> {
        let Some(keys) = keys else {
            return Ok(Link { stream, seal: None });
        };
        let mut hello = Vec::new();
        let hs = ClientHandshake::start(keys, draw_nonce()?, &mut hello);
        stream.write_all(&hello).await?;
        let answer = match read_raw(&mut stream, HANDSHAKE_BYTES as u32).await {
            Ok(a) => a,
            Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => {
                return Err(invalid(format!(
                    "{peer} closed the connection during the key handshake: it does not hold key {} (another cluster's key?) or runs without a cluster key",
                    hs.key_id()
                )))
            }
            Err(e) => return Err(e),
        };
        match hs.finish(&answer) {
            Ok(sealed) => Ok(Link {
                stream,
                seal: Some(sealed),
            }),
            Err(StreamError::Plain(_) | StreamError::BadMagic(_)) => Err(invalid(format!(
                "{peer} answered in clear: it runs without a cluster key, and this replica has one"
            ))),
            Err(e) => Err(invalid(format!("{peer}: key handshake: {e}"))),
        }
    }

    /// Takes the handshake on `stream` as the accepting side (none without
    /// `keys`). A plain peer of a keyed replica is told the key is required.
    async fn accept(mut stream: TcpStream, keys: Option<&KeyRing>) -> std::io::Result<Link> {
        let Some(keys) = keys else {
            return Ok(Link { stream, seal: None });
        };
        // A hello is small: a peer that has proven nothing gets no large
        // buffer.
        let hello = read_raw(&mut stream, FRAME_MAX_BYTES.min(1024)).await?;
        let mut answer = Vec::new();
        match stream::accept(keys, &hello, draw_nonce()?, &mut answer) {
            Ok(sealed) => {
                stream.write_all(&answer).await?;
                Ok(Link {
                    stream,
                    seal: Some(sealed),
                })
            }
            Err(e @ (StreamError::Plain(_) | StreamError::BadMagic(_))) => {
                let mut refusal = Vec::new();
                stream::write_key_required(&mut refusal);
                let _ = stream.write_all(&refusal).await;
                Err(invalid(format!(
                    "it speaks without a cluster key ({e}), and this replica requires one"
                )))
            }
            Err(StreamError::UnknownKey(k)) => Err(invalid(format!(
                "it offered key id {k}, which this replica does not hold"
            ))),
            Err(e) => Err(invalid(format!("key handshake: {e}"))),
        }
    }

    async fn write_frame<T: Serialize>(&mut self, msg: &T) -> std::io::Result<()> {
        let body = serde_json::to_vec(msg).map_err(std::io::Error::other)?;
        if u32::try_from(body.len())
            .ok()
            .filter(|n| *n <= FRAME_MAX_BYTES)
            .is_none()
        {
            return Err(std::io::Error::other("frame too large"));
        }
        let mut out = Vec::with_capacity(4 + body.len() + TAG_BYTES);
        match &mut self.seal {
            None => {
                chorus_proto::wire::frame::write_frame(&mut out, |b| b.extend_from_slice(&body))
            }
            Some(s) => s
                .seal_frame(&mut out, |b| b.extend_from_slice(&body))
                .map_err(|e| std::io::Error::other(e.to_string()))?,
        }
        self.stream.write_all(&out).await
    }

    /// The next frame's plain body: opened, when sealed. A frame that does
    /// not open is an error (the connection is then dropped).
    async fn read_frame(&mut self) -> std::io::Result<Vec<u8>> {
        let max = FRAME_MAX_BYTES
            + if self.seal.is_some() {
                TAG_BYTES as u32
            } else {
                0
            };
        let mut body = read_raw(&mut self.stream, max).await?;
        match &mut self.seal {
            None => {
                if is_from_keyed_peer(&body) {
                    return Err(invalid(
                        "the peer requires the cluster key, and this replica runs without one"
                            .to_owned(),
                    ));
                }
                Ok(body)
            }
            Some(s) => {
                let n = s
                    .open(&mut body)
                    .map_err(|e| invalid(format!("a sealed frame did not open: {e}")))?
                    .len();
                body.truncate(n);
                Ok(body)
            }
        }
    }
}

/// Creates a client per peer.
#[derive(Debug, Clone)]
pub struct Network {
    pub me: Identity,
    /// The cluster key ring; `None` for an insecure cluster.
    pub keys: Option<KeyRing>,
}

impl RaftNetworkFactory<TypeConfig> for Network {
    type Network = PeerClient;

    async fn new_client(&mut self, target: NodeId, node: &BasicNode) -> PeerClient {
        PeerClient {
            me: self.me,
            keys: self.keys.clone(),
            target,
            addr: node.addr.parse().ok(),
            raw_addr: node.addr.clone(),
            conn: None,
        }
    }
}

/// One peer, as seen by this replica's Raft.
#[derive(Debug)]
pub struct PeerClient {
    me: Identity,
    keys: Option<KeyRing>,
    target: NodeId,
    addr: Option<SocketAddr>,
    raw_addr: String,
    conn: Option<Link>,
}

type RpcErr<E = openraft::error::Infallible> = RPCError<NodeId, BasicNode, RaftError<NodeId, E>>;

impl PeerClient {
    /// Sends one request and waits for its reply, within `ttl`.
    async fn call(&mut self, req: Request, ttl: Duration) -> Result<Reply, std::io::Error> {
        match tokio::time::timeout(ttl, self.call_inner(req)).await {
            Ok(Ok(reply)) => Ok(reply),
            Ok(Err(e)) => {
                self.conn = None;
                Err(e)
            }
            Err(_) => {
                // The reply may still come on this stream: start afresh.
                self.conn = None;
                Err(std::io::Error::new(
                    std::io::ErrorKind::TimedOut,
                    "no reply in time",
                ))
            }
        }
    }

    async fn call_inner(&mut self, req: Request) -> Result<Reply, std::io::Error> {
        if self.conn.is_none() {
            let addr = self.addr.ok_or_else(|| {
                std::io::Error::other(format!("`{}` is not an address", self.raw_addr))
            })?;
            let s = tokio::time::timeout(CONNECT_TIMEOUT, TcpStream::connect(addr))
                .await
                .map_err(|_| std::io::Error::new(std::io::ErrorKind::TimedOut, "connect"))??;
            s.set_nodelay(true)?;
            let peer = format!("replica {} at {addr}", self.target);
            self.conn = Some(Link::connect(s, self.keys.as_ref(), &peer).await?);
        }
        let Some(conn) = self.conn.as_mut() else {
            return Err(std::io::Error::other("no connection"));
        };
        let env = Envelope {
            version: RAFT_WIRE_VERSION,
            cluster: self.me.cluster,
            from: self.me.id,
            body: req,
        };
        conn.write_frame(&env).await?;
        let body = conn.read_frame().await.map_err(|e| {
            if e.kind() == std::io::ErrorKind::InvalidData {
                invalid(format!("replica {}: {e}", self.target))
            } else {
                e
            }
        })?;
        let env: Envelope<Reply> = serde_json::from_slice(&body)
            .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidData, e))?;
        if env.version != RAFT_WIRE_VERSION || env.cluster != self.me.cluster {
            return Err(std::io::Error::new(
                std::io::ErrorKind::InvalidData,
                format!(
                    "replica {} answered with version {} cluster {}",
                    self.target, env.version, env.cluster
                ),
            ));
        }
        if let Reply::Refused(why) = &env.body {
            return Err(std::io::Error::other(format!(
                "replica {} refused us: {why}",
                self.target
            )));
        }
        Ok(env.body)
    }
}

fn unreachable<E: std::error::Error>(e: &std::io::Error) -> RPCError<NodeId, BasicNode, E> {
    if e.kind() == std::io::ErrorKind::InvalidData {
        RPCError::Network(NetworkError::new(e))
    } else {
        RPCError::Unreachable(Unreachable::new(e))
    }
}

fn unexpected<E: std::error::Error>(what: &str) -> RPCError<NodeId, BasicNode, E> {
    let e = std::io::Error::new(std::io::ErrorKind::InvalidData, what.to_owned());
    RPCError::Network(NetworkError::new(&e))
}

impl RaftNetwork<TypeConfig> for PeerClient {
    async fn append_entries(
        &mut self,
        rpc: AppendEntriesRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<AppendEntriesResponse<NodeId>, RpcErr> {
        match self.call(Request::Append(rpc), option.hard_ttl()).await {
            Ok(Reply::Append(Ok(r))) => Ok(r),
            Ok(Reply::Append(Err(e))) => Err(RPCError::RemoteError(
                openraft::error::RemoteError::new(self.target, e),
            )),
            Ok(_) => Err(unexpected("a reply of another kind")),
            Err(e) => Err(unreachable(&e)),
        }
    }

    async fn install_snapshot(
        &mut self,
        rpc: InstallSnapshotRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<InstallSnapshotResponse<NodeId>, RpcErr<InstallSnapshotError>> {
        match self.call(Request::Snapshot(rpc), option.hard_ttl()).await {
            Ok(Reply::Snapshot(Ok(r))) => Ok(r),
            Ok(Reply::Snapshot(Err(e))) => Err(RPCError::RemoteError(
                openraft::error::RemoteError::new(self.target, e),
            )),
            Ok(_) => Err(unexpected("a reply of another kind")),
            Err(e) => Err(unreachable(&e)),
        }
    }

    async fn vote(
        &mut self,
        rpc: VoteRequest<NodeId>,
        option: RPCOption,
    ) -> Result<VoteResponse<NodeId>, RpcErr> {
        match self.call(Request::Vote(rpc), option.hard_ttl()).await {
            Ok(Reply::Vote(Ok(r))) => Ok(r),
            Ok(Reply::Vote(Err(e))) => Err(RPCError::RemoteError(
                openraft::error::RemoteError::new(self.target, e),
            )),
            Ok(_) => Err(unexpected("a reply of another kind")),
            Err(e) => Err(unreachable(&e)),
        }
    }
}

/// Counts bad peers, so that one sending garbage cannot flood the log.
#[derive(Debug, Default)]
struct BadPeers(AtomicU32);

impl BadPeers {
    fn warn(&self, msg: std::fmt::Arguments<'_>) {
        let n = self.0.fetch_add(1, Ordering::Relaxed);
        if n < BAD_PEER_WARNINGS {
            log::warn!("raft: {msg}");
        } else if n == BAD_PEER_WARNINGS {
            log::warn!("raft: {msg} (further bad peers are not logged)");
        }
    }
}

/// Serves the peers' RPCs on `listener` until the runtime stops.
pub async fn serve(
    listener: TcpListener,
    raft: Raft<TypeConfig>,
    me: Identity,
    keys: Option<KeyRing>,
) {
    let bad = Arc::new(BadPeers::default());
    loop {
        match listener.accept().await {
            Ok((stream, peer)) => {
                let raft = raft.clone();
                let bad = Arc::clone(&bad);
                let keys = keys.clone();
                tokio::spawn(async move {
                    if let Err(e) = serve_conn(stream, raft, me, keys, &bad).await {
                        if e.kind() != std::io::ErrorKind::UnexpectedEof {
                            bad.warn(format_args!("peer {peer}: {e}; connection closed"));
                        }
                    }
                });
            }
            Err(e) => {
                log::warn!("raft: accept: {e}");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }
}

async fn serve_conn(
    stream: TcpStream,
    raft: Raft<TypeConfig>,
    me: Identity,
    keys: Option<KeyRing>,
    _bad: &BadPeers,
) -> std::io::Result<()> {
    stream.set_nodelay(true)?;
    // The handshake of a peer that never finishes it must not hold a task
    // for ever.
    let mut stream = tokio::time::timeout(HANDSHAKE_TIMEOUT, Link::accept(stream, keys.as_ref()))
        .await
        .map_err(|_| invalid("no key handshake in time".to_owned()))??;
    loop {
        let body = stream.read_frame().await?;
        let refuse = |why: String| std::io::Error::new(std::io::ErrorKind::InvalidData, why);
        let header: Header = match serde_json::from_slice(&body) {
            Ok(h) => h,
            Err(e) => {
                let why = format!("a frame that does not decode ({e})");
                let _ = reply(&mut stream, me, Reply::Refused(why.clone())).await;
                return Err(refuse(why));
            }
        };
        if header.version != RAFT_WIRE_VERSION {
            let why = format!(
                "replica {} runs raft wire version {}, this one {RAFT_WIRE_VERSION}",
                header.from, header.version
            );
            let _ = reply(&mut stream, me, Reply::Refused(why.clone())).await;
            return Err(refuse(why));
        }
        if header.cluster != me.cluster {
            let why = format!("replica {} belongs to another cluster", header.from);
            let _ = reply(&mut stream, me, Reply::Refused(why.clone())).await;
            return Err(refuse(why));
        }
        let env: Envelope<Request> = match serde_json::from_slice(&body) {
            Ok(env) => env,
            Err(e) => {
                let why = format!(
                    "replica {}: a request that does not decode ({e})",
                    header.from
                );
                let _ = reply(&mut stream, me, Reply::Refused(why.clone())).await;
                return Err(refuse(why));
            }
        };
        let answer = match env.body {
            Request::Append(r) => Reply::Append(raft.append_entries(r).await),
            Request::Vote(r) => Reply::Vote(raft.vote(r).await),
            Request::Snapshot(r) => Reply::Snapshot(raft.install_snapshot(r).await),
        };
        reply(&mut stream, me, answer).await?;
    }
}

async fn reply(stream: &mut Link, me: Identity, body: Reply) -> std::io::Result<()> {
    let env = Envelope {
        version: RAFT_WIRE_VERSION,
        cluster: me.cluster,
        from: me.id,
        body,
    };
    stream.write_frame(&env).await
}
