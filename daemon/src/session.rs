//! The edge of one local app connection: bytes in and out, credentials.

use chorus_proto::host::Credentials;
use chorus_proto::wire::app::APP_FRAME_MAX_BYTES;
use chorus_proto::wire::frame::FrameBuffer;
use mio::net::UnixStream;
use std::io::{self, Read, Write};

/// Bytes read per read call.
const READ_CHUNK_BYTES: usize = 64 * 1024;

/// One connected app.
#[derive(Debug)]
pub struct AppConn {
    pub stream: UnixStream,
    pub frames: FrameBuffer,
    pub out: Vec<u8>,
    out_pos: usize,
    /// The peer closed its side (we still deliver what it sent).
    pub eof: bool,
    pub pid: Option<i32>,
}

impl AppConn {
    pub fn new(stream: UnixStream, pid: Option<i32>) -> Self {
        AppConn {
            stream,
            frames: FrameBuffer::new(APP_FRAME_MAX_BYTES),
            out: Vec::new(),
            out_pos: 0,
            eof: false,
            pid,
        }
    }

    /// Reads what is available (up to `budget` chunks). Ok(true) if the
    /// budget ran out with data possibly left.
    pub fn read_some(&mut self, budget: usize) -> io::Result<bool> {
        let mut chunk = [0u8; READ_CHUNK_BYTES];
        for _ in 0..budget {
            match self.stream.read(&mut chunk) {
                Ok(0) => {
                    self.eof = true;
                    return Ok(false);
                }
                Ok(n) => self.frames.extend(&chunk[..n]),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(false),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        Ok(true)
    }

    /// Bytes queued and not yet written.
    pub fn pending_out(&self) -> usize {
        self.out.len() - self.out_pos
    }

    /// Writes queued bytes until done or the socket is full.
    pub fn write_out(&mut self) -> io::Result<()> {
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

/// Who is on the other end of an app socket, from SO_PEERCRED.
pub fn peer_credentials(stream: &UnixStream) -> (Credentials, Option<i32>) {
    use nix::sys::socket::{getsockopt, sockopt::PeerCredentials};
    use nix::unistd::{getgrouplist, Gid, Group, Uid, User};
    let Ok(cred) = getsockopt(stream, PeerCredentials) else {
        return (Credentials::default(), None);
    };
    let uid = Uid::from_raw(cred.uid());
    let gid = Gid::from_raw(cred.gid());
    let user = User::from_uid(uid).ok().flatten();
    let name = user
        .as_ref()
        .map_or_else(|| uid.to_string(), |u| u.name.clone());
    let mut gids = vec![gid];
    if let Some(u) = &user {
        if let Ok(cname) = std::ffi::CString::new(u.name.clone()) {
            if let Ok(list) = getgrouplist(&cname, gid) {
                gids = list;
            }
        }
    }
    let unix_groups = gids
        .into_iter()
        .filter_map(|g| Group::from_gid(g).ok().flatten().map(|g| g.name))
        .collect();
    (
        Credentials {
            user: name,
            unix_groups,
        },
        Some(cred.pid()),
    )
}
