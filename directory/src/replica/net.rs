//! Raft between replicas: length-prefixed JSON frames over TCP.
//!
//! Each frame is a u32 big-endian length, then a JSON [`Envelope`]. The
//! envelope says which protocol version and cluster the sender runs and
//! which replica it is; a peer of another version or cluster, or one that
//! sends something that does not decode, is logged (rate-limited) and its
//! connection closed: it never reaches Raft and never stops this replica.
//! A client keeps one connection per peer and reconnects on any error;
//! each RPC is bounded by the timeout openraft gives it.

use super::types::TypeConfig;
use openraft::error::{InstallSnapshotError, NetworkError, RPCError, RaftError, Unreachable};
use openraft::network::{RPCOption, RaftNetwork, RaftNetworkFactory};
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, InstallSnapshotRequest, InstallSnapshotResponse,
    VoteRequest, VoteResponse,
};
use openraft::{BasicNode, Raft};
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

async fn write_frame<T: Serialize>(s: &mut TcpStream, msg: &T) -> std::io::Result<()> {
    let body = serde_json::to_vec(msg).map_err(std::io::Error::other)?;
    let len = u32::try_from(body.len())
        .ok()
        .filter(|n| *n <= FRAME_MAX_BYTES)
        .ok_or_else(|| std::io::Error::other("frame too large"))?;
    let mut out = Vec::with_capacity(4 + body.len());
    out.extend_from_slice(&len.to_be_bytes());
    out.extend_from_slice(&body);
    s.write_all(&out).await
}

async fn read_frame(s: &mut TcpStream) -> std::io::Result<Vec<u8>> {
    let mut len = [0u8; 4];
    s.read_exact(&mut len).await?;
    let len = u32::from_be_bytes(len);
    if len > FRAME_MAX_BYTES {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            format!("frame of {len} bytes, over {FRAME_MAX_BYTES}"),
        ));
    }
    let mut body = vec![0u8; len as usize];
    s.read_exact(&mut body).await?;
    Ok(body)
}

/// Creates a client per peer.
#[derive(Debug, Clone)]
pub struct Network {
    pub me: Identity,
}

impl RaftNetworkFactory<TypeConfig> for Network {
    type Network = PeerClient;

    async fn new_client(&mut self, target: NodeId, node: &BasicNode) -> PeerClient {
        PeerClient {
            me: self.me,
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
    target: NodeId,
    addr: Option<SocketAddr>,
    raw_addr: String,
    conn: Option<TcpStream>,
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
            self.conn = Some(s);
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
        write_frame(conn, &env).await?;
        let body = read_frame(conn).await?;
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
pub async fn serve(listener: TcpListener, raft: Raft<TypeConfig>, me: Identity) {
    let bad = Arc::new(BadPeers::default());
    loop {
        match listener.accept().await {
            Ok((stream, peer)) => {
                let raft = raft.clone();
                let bad = Arc::clone(&bad);
                tokio::spawn(async move {
                    if let Err(e) = serve_conn(stream, raft, me, &bad).await {
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
    mut stream: TcpStream,
    raft: Raft<TypeConfig>,
    me: Identity,
    _bad: &BadPeers,
) -> std::io::Result<()> {
    stream.set_nodelay(true)?;
    loop {
        let body = read_frame(&mut stream).await?;
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

async fn reply(stream: &mut TcpStream, me: Identity, body: Reply) -> std::io::Result<()> {
    let env = Envelope {
        version: RAFT_WIRE_VERSION,
        cluster: me.cluster,
        from: me.id,
        body,
    };
    write_frame(stream, &env).await
}
