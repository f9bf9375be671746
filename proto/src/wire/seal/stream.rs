//! Sealing a byte stream of frames with the cluster key: the daemon's link
//! to the directory and the Raft port between directory replicas.
//!
//! Why not TLS: the ends share a symmetric key and no certificates, and
//! rustls has no external pre-shared-key support; one AEAD framing shared
//! with the datagrams ([`super`]) keeps one audited primitive (ring's
//! AES-256-GCM) and nothing to issue or renew.
//!
//! The handshake, two clear frames (each inside the usual 4-byte length):
//!
//! ```text
//! connecting side → accepting side: MAGIC u16 | VERSION u8 | 0x81 | key id u32 | nonce_c 32 bytes
//! accepting side → connecting side: MAGIC u16 | VERSION u8 | 0x82 | key id u32 | nonce_s 32 bytes
//! ```
//!
//! The connecting side offers its current key; the accepting side answers
//! only if it holds that key (the same id comes back), else it closes. Both
//! derive one AES key per direction from the cluster key and both nonces
//! (`"stream c2s"` and `"stream s2c"`), so a session's keys are fresh even
//! if one side's random source repeats. Every later frame is the length
//! prefix, then the ciphertext and its 16-byte tag; the length prefix is
//! the associated data and a per-direction counter from 0 is the nonce, so
//! a frame altered, cut, dropped, reordered, replayed or injected fails to
//! open, and the stream is then given up (a [`SealedStream`] that failed
//! once refuses everything after: a stream cannot be resynchronised).
//!
//! The nonces prove nothing: the first sealed frame each way does. The
//! accepting side acts on nothing before the first sealed frame from the
//! connecting side opened, and sends nothing but its nonce before it; the
//! connecting side believes nothing before the first sealed frame from the
//! accepting side opened.
//!
//! A keyed accepting side that receives a plain frame instead of a hello
//! answers with the clear frame `MAGIC | VERSION | 0x83` ([`KIND_STREAM_KEY_REQUIRED`])
//! before closing, so that a peer running without a key can say why it was
//! refused rather than only that the connection closed.

use super::{ClusterKey, KeyId, KeyRing, TAG_BYTES};
use crate::wire::frame::write_frame;
use crate::wire::{MAGIC, VERSION};
use ring::aead::{Aad, LessSafeKey, Nonce, Tag};
use std::fmt;

/// The kind byte of the connecting side's hello.
pub const KIND_STREAM_HELLO: u8 = 0x81;
/// The kind byte of the accepting side's answer.
pub const KIND_STREAM_ACCEPT: u8 = 0x82;
/// The kind byte of a keyed accepting side's refusal of a plain peer.
pub const KIND_STREAM_KEY_REQUIRED: u8 = 0x83;
/// Bytes of each side's random nonce.
pub const STREAM_NONCE_BYTES: usize = 32;
/// Bytes of a hello or accept frame's body.
pub const HANDSHAKE_BYTES: usize = 2 + 1 + 1 + 4 + STREAM_NONCE_BYTES;
/// Bytes of a refusal frame's body.
pub const KEY_REQUIRED_BYTES: usize = 2 + 1 + 1;

/// One side's handshake nonce, drawn by the caller from a cryptographic
/// random source (the core draws no randomness).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StreamNonce(pub [u8; STREAM_NONCE_BYTES]);

/// Why a handshake or a sealed frame was refused. Each ends the stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum StreamError {
    #[error("{0} bytes where a key handshake frame was expected")]
    BadLength(usize),
    #[error("not a chorus frame (magic {0:#06x})")]
    BadMagic(u16),
    #[error("protocol version {0}, this process speaks {VERSION}")]
    BadVersion(u8),
    #[error("a plain frame (kind {0:#04x}): the peer runs without a cluster key")]
    Plain(u8),
    #[error("the peer requires the cluster key, and this process runs without one")]
    KeyRequired,
    #[error("kind {0:#04x} where a key handshake frame was expected")]
    UnexpectedKind(u8),
    #[error("the peer offered key {0}, which this process does not hold")]
    UnknownKey(KeyId),
    #[error("the peer answered with key {got} to an offer of key {offered}")]
    WrongKey { offered: KeyId, got: KeyId },
    #[error("a sealed frame of {0} bytes, shorter than its tag")]
    TooShort(usize),
    #[error("authentication failed: the frame was forged, altered, replayed or reordered, or the peer does not hold the key")]
    Forged,
    #[error("the stream failed before and is given up")]
    Failed,
    #[error("the frame counter is exhausted")]
    Exhausted,
}

/// Reads a handshake frame's header: the kind and the key id and nonce if
/// it is a hello or an accept.
fn parse(body: &[u8], want: u8) -> Result<(KeyId, StreamNonce), StreamError> {
    if body.len() < 4 {
        return Err(StreamError::BadLength(body.len()));
    }
    let magic = u16::from_be_bytes([body[0], body[1]]);
    if magic != MAGIC {
        return Err(StreamError::BadMagic(magic));
    }
    if body[2] != VERSION {
        return Err(StreamError::BadVersion(body[2]));
    }
    let kind = body[3];
    if kind < 0x80 {
        return Err(StreamError::Plain(kind));
    }
    if kind == KIND_STREAM_KEY_REQUIRED {
        return Err(StreamError::KeyRequired);
    }
    if kind != want {
        return Err(StreamError::UnexpectedKind(kind));
    }
    if body.len() != HANDSHAKE_BYTES {
        return Err(StreamError::BadLength(body.len()));
    }
    let id = KeyId(u32::from_be_bytes([body[4], body[5], body[6], body[7]]));
    let mut n = [0u8; STREAM_NONCE_BYTES];
    n.copy_from_slice(&body[8..]);
    Ok((id, StreamNonce(n)))
}

fn write_handshake(out: &mut Vec<u8>, kind: u8, id: KeyId, nonce: &StreamNonce) {
    write_frame(out, |b| {
        b.extend_from_slice(&MAGIC.to_be_bytes());
        b.push(VERSION);
        b.push(kind);
        b.extend_from_slice(&id.0.to_be_bytes());
        b.extend_from_slice(&nonce.0);
    });
}

/// Appends the clear refusal a keyed accepting side sends a plain peer.
pub fn write_key_required(out: &mut Vec<u8>) {
    write_frame(out, |b| {
        b.extend_from_slice(&MAGIC.to_be_bytes());
        b.push(VERSION);
        b.push(KIND_STREAM_KEY_REQUIRED);
    });
}

/// Whether a frame body is a keyed peer's refusal or hello: what a process
/// without a key sees from a keyed one (so it can say so, not just fail to
/// decode).
pub fn is_from_keyed_peer(body: &[u8]) -> bool {
    body.len() >= 4
        && u16::from_be_bytes([body[0], body[1]]) == MAGIC
        && matches!(
            body[3],
            KIND_STREAM_HELLO | KIND_STREAM_ACCEPT | KIND_STREAM_KEY_REQUIRED
        )
}

/// The connecting side between its hello and the accepting side's answer.
#[derive(Debug)]
pub struct ClientHandshake {
    key: ClusterKey,
    nonce: StreamNonce,
}

impl ClientHandshake {
    /// Offers `keys`' current key: appends the hello frame to `out`.
    pub fn start(keys: &KeyRing, nonce: StreamNonce, out: &mut Vec<u8>) -> ClientHandshake {
        let key = keys.current().clone();
        write_handshake(out, KIND_STREAM_HELLO, key.id(), &nonce);
        ClientHandshake { key, nonce }
    }

    /// The key id offered.
    pub fn key_id(&self) -> KeyId {
        self.key.id()
    }

    /// Takes the accepting side's answer (a whole frame body). The stream
    /// returned is not yet proof that the peer holds the key: the first
    /// frame it opens is.
    pub fn finish(self, body: &[u8]) -> Result<SealedStream, StreamError> {
        let (id, nonce_s) = parse(body, KIND_STREAM_ACCEPT)?;
        if id != self.key.id() {
            return Err(StreamError::WrongKey {
                offered: self.key.id(),
                got: id,
            });
        }
        Ok(SealedStream::new(&self.key, &self.nonce, &nonce_s, true))
    }
}

/// The accepting side's answer to a hello (a whole frame body): if it
/// holds the key offered, appends its own nonce to `out` and returns the
/// stream. Nothing the peer sends may be acted on until the stream opened a
/// frame from it ([`SealedStream::peer_proven`]).
pub fn accept(
    keys: &KeyRing,
    hello: &[u8],
    nonce: StreamNonce,
    out: &mut Vec<u8>,
) -> Result<SealedStream, StreamError> {
    let (id, nonce_c) = parse(hello, KIND_STREAM_HELLO)?;
    let key = keys.get(id).ok_or(StreamError::UnknownKey(id))?;
    write_handshake(out, KIND_STREAM_ACCEPT, id, &nonce);
    Ok(SealedStream::new(key, &nonce_c, &nonce, false))
}

/// One direction's key and the counter of its next frame.
struct Direction {
    aead: LessSafeKey,
    next: u64,
}

impl Direction {
    fn nonce(&mut self) -> Result<Nonce, StreamError> {
        let c = self.next;
        self.next = c.checked_add(1).ok_or(StreamError::Exhausted)?;
        let mut n = [0u8; 12];
        n[4..].copy_from_slice(&c.to_be_bytes());
        Ok(Nonce::assume_unique_for_key(n))
    }
}

/// A stream after the handshake: seals what this side sends, opens what
/// the peer sends, in order.
pub struct SealedStream {
    key_id: KeyId,
    send: Direction,
    recv: Direction,
    failed: bool,
}

impl fmt::Debug for SealedStream {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SealedStream")
            .field("key_id", &self.key_id)
            .field("sent", &self.send.next)
            .field("opened", &self.recv.next)
            .field("failed", &self.failed)
            .finish()
    }
}

impl SealedStream {
    fn new(
        key: &ClusterKey,
        nonce_c: &StreamNonce,
        nonce_s: &StreamNonce,
        client: bool,
    ) -> SealedStream {
        let c2s = Direction {
            aead: key.derive_aead(&[b"stream c2s", &nonce_c.0, &nonce_s.0]),
            next: 0,
        };
        let s2c = Direction {
            aead: key.derive_aead(&[b"stream s2c", &nonce_c.0, &nonce_s.0]),
            next: 0,
        };
        let (send, recv) = if client { (c2s, s2c) } else { (s2c, c2s) };
        SealedStream {
            key_id: key.id(),
            send,
            recv,
            failed: false,
        }
    }

    /// The key the stream is sealed under.
    pub fn key_id(&self) -> KeyId {
        self.key_id
    }

    /// Whether a frame from the peer opened: only then has the peer shown
    /// that it holds the key.
    pub fn peer_proven(&self) -> bool {
        self.recv.next > 0 && !self.failed
    }

    /// Frames opened so far.
    pub fn opened(&self) -> u64 {
        self.recv.next
    }

    /// Appends one sealed frame to `out`: `body` writes the plain body.
    pub fn seal_frame(
        &mut self,
        out: &mut Vec<u8>,
        body: impl FnOnce(&mut Vec<u8>),
    ) -> Result<(), StreamError> {
        if self.failed {
            return Err(StreamError::Failed);
        }
        let at = out.len();
        out.extend_from_slice(&[0, 0, 0, 0]);
        body(out);
        let plain = out.len() - at - 4;
        let Ok(len) = u32::try_from(plain + TAG_BYTES) else {
            out.truncate(at);
            return Err(StreamError::TooShort(plain));
        };
        let prefix = len.to_be_bytes();
        out[at..at + 4].copy_from_slice(&prefix);
        let nonce = match self.send.nonce() {
            Ok(n) => n,
            Err(e) => {
                out.truncate(at);
                self.failed = true;
                return Err(e);
            }
        };
        let tag = match self.send.aead.seal_in_place_separate_tag(
            nonce,
            Aad::from(prefix),
            &mut out[at + 4..],
        ) {
            Ok(t) => t,
            // Only a message longer than GCM allows (64 GiB) fails.
            Err(_) => {
                out.truncate(at);
                self.failed = true;
                return Err(StreamError::TooShort(plain));
            }
        };
        out.extend_from_slice(tag.as_ref());
        Ok(())
    }

    /// Opens one sealed frame body (what follows its length prefix) in
    /// place and returns the plain body. Any failure gives the stream up.
    pub fn open<'a>(&mut self, body: &'a mut [u8]) -> Result<&'a [u8], StreamError> {
        if self.failed {
            return Err(StreamError::Failed);
        }
        let r = self.open_inner(body);
        if r.is_err() {
            self.failed = true;
        }
        r
    }

    fn open_inner<'a>(&mut self, body: &'a mut [u8]) -> Result<&'a [u8], StreamError> {
        let len = body.len();
        if len < TAG_BYTES {
            return Err(StreamError::TooShort(len));
        }
        let prefix = u32::try_from(len)
            .map_err(|_| StreamError::TooShort(len))?
            .to_be_bytes();
        let (text, tag) = body.split_at_mut(len - TAG_BYTES);
        let tag: [u8; TAG_BYTES] = match (&*tag).try_into() {
            Ok(t) => t,
            Err(_) => return Err(StreamError::TooShort(len)),
        };
        // The counter moves only when the frame opened; on failure the
        // stream is given up anyway.
        let c = self.recv.next;
        let mut n = [0u8; 12];
        n[4..].copy_from_slice(&c.to_be_bytes());
        self.recv
            .aead
            .open_in_place_separate_tag(
                Nonce::assume_unique_for_key(n),
                Aad::from(prefix),
                Tag::from(tag),
                text,
                0..,
            )
            .map_err(|_| StreamError::Forged)?;
        self.recv.next = c.checked_add(1).ok_or(StreamError::Exhausted)?;
        Ok(text)
    }

    /// Opens a sealed frame body into `out` (cleared first): for callers
    /// whose frame buffer lends the body read-only.
    pub fn open_into(&mut self, body: &[u8], out: &mut Vec<u8>) -> Result<(), StreamError> {
        out.clear();
        out.extend_from_slice(body);
        let plain = self.open(out)?.len();
        out.truncate(plain);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::frame::FrameBuffer;
    use proptest::prelude::*;

    const MAX: usize = 1 << 20;

    fn key(b: u8) -> ClusterKey {
        ClusterKey::from_bytes(&[b; super::super::KEY_BYTES])
    }

    fn ring(b: u8) -> KeyRing {
        KeyRing::new(key(b), vec![])
    }

    /// The frame bodies in `bytes`.
    fn frames(bytes: &[u8]) -> Vec<Vec<u8>> {
        let mut fb = FrameBuffer::new(MAX);
        fb.extend(bytes);
        let mut v = Vec::new();
        while let Some(f) = fb.next_frame().expect("a frame") {
            v.push(f.to_vec());
        }
        v
    }

    /// A completed handshake between a client with `c` and a server with
    /// `s`: (client, server).
    fn pair(c: &KeyRing, s: &KeyRing) -> Result<(SealedStream, SealedStream), StreamError> {
        let mut hello = Vec::new();
        let hs = ClientHandshake::start(c, StreamNonce([1; 32]), &mut hello);
        let hello = frames(&hello).remove(0);
        let mut answer = Vec::new();
        let server = accept(s, &hello, StreamNonce([2; 32]), &mut answer)?;
        let answer = frames(&answer).remove(0);
        let client = hs.finish(&answer)?;
        Ok((client, server))
    }

    fn seal(s: &mut SealedStream, plain: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        s.seal_frame(&mut out, |b| b.extend_from_slice(plain))
            .expect("seal");
        frames(&out).remove(0)
    }

    #[test]
    fn frames_go_both_ways_and_hide_their_content() {
        let (mut c, mut s) = pair(&ring(1), &ring(1)).expect("handshake");
        assert!(!s.peer_proven());
        let mut f = seal(&mut c, b"hello, directory");
        assert_eq!(f.len(), b"hello, directory".len() + TAG_BYTES);
        assert!(!f.windows(9).any(|w| w == b"directory"));
        assert_eq!(s.open(&mut f), Ok(&b"hello, directory"[..]));
        assert!(s.peer_proven());
        let mut g = seal(&mut s, b"welcome");
        assert_eq!(c.open(&mut g), Ok(&b"welcome"[..]));
        let mut out = Vec::new();
        let f2 = seal(&mut c, b"");
        s.open_into(&f2, &mut out).expect("an empty frame opens");
        assert!(out.is_empty());
    }

    #[test]
    fn a_frame_replayed_reordered_dropped_or_mirrored_is_refused() {
        let (mut c, _) = pair(&ring(1), &ring(1)).expect("handshake");
        let f0 = seal(&mut c, b"zero");
        let f1 = seal(&mut c, b"one");
        let f2 = seal(&mut c, b"two");

        let mut replay = s_clone(&ring(1));
        assert!(replay.open(&mut f0.clone()).is_ok());
        assert_eq!(replay.open(&mut f0.clone()), Err(StreamError::Forged));
        assert_eq!(
            replay.open(&mut f1.clone()),
            Err(StreamError::Failed),
            "a stream that failed once stays failed"
        );

        let mut reorder = s_clone(&ring(1));
        assert_eq!(reorder.open(&mut f1.clone()), Err(StreamError::Forged));

        let mut dropped = s_clone(&ring(1));
        assert!(dropped.open(&mut f0.clone()).is_ok());
        assert_eq!(dropped.open(&mut f2.clone()), Err(StreamError::Forged));

        // The client's own frame sent back to it (a reflection) does not
        // open: each direction has its own key.
        let (mut c2, _s2) = pair(&ring(1), &ring(1)).expect("handshake");
        let mut mine = seal(&mut c2, b"reflected");
        let mut c3 = pair(&ring(1), &ring(1)).expect("handshake").0;
        assert_eq!(c3.open(&mut mine), Err(StreamError::Forged));
    }

    /// A fresh server side of the same handshake as [`pair`]'s: `pair`'s
    /// nonces are fixed, so it opens the frames of any of `pair`'s clients
    /// from the first.
    fn s_clone(r: &KeyRing) -> SealedStream {
        pair(r, r).expect("handshake").1
    }

    #[test]
    fn a_truncated_frame_is_refused() {
        let (mut c, mut s) = pair(&ring(1), &ring(1)).expect("handshake");
        let f = seal(&mut c, b"cut short");
        let mut cut = f[..f.len() - 1].to_vec();
        assert_eq!(s.open(&mut cut), Err(StreamError::Forged));
        let mut s2 = s_clone(&ring(1));
        assert_eq!(s2.open(&mut f[..5].to_vec()), Err(StreamError::TooShort(5)));
    }

    #[test]
    fn a_server_without_the_key_offered_refuses_the_hello() {
        assert!(matches!(
            pair(&ring(1), &ring(2)),
            Err(StreamError::UnknownKey(_))
        ));
    }

    #[test]
    fn a_server_with_another_key_under_the_same_id_is_found_out_by_the_first_frame() {
        // Forge an answer as a directory without the key would: it can echo
        // the id, but the frames it seals do not open.
        let mut hello = Vec::new();
        let hs = ClientHandshake::start(&ring(1), StreamNonce([1; 32]), &mut hello);
        let mut answer = Vec::new();
        write_handshake(
            &mut answer,
            KIND_STREAM_ACCEPT,
            key(1).id(),
            &StreamNonce([2; 32]),
        );
        let mut client = hs.finish(&frames(&answer)[0]).expect("the answer parses");
        let mut impostor =
            SealedStream::new(&key(2), &StreamNonce([1; 32]), &StreamNonce([2; 32]), false);
        let mut f = seal(&mut impostor, b"welcome");
        assert_eq!(client.open(&mut f), Err(StreamError::Forged));
        assert!(!client.peer_proven());
    }

    #[test]
    fn during_a_rotation_either_key_is_accepted() {
        let both = KeyRing::new(key(2), vec![key(1)]);
        let (mut c, mut s) = pair(&ring(1), &both).expect("the old key is accepted");
        assert_eq!(s.key_id(), key(1).id());
        let mut f = seal(&mut c, b"old");
        assert!(s.open(&mut f).is_ok());
        let (mut c, mut s) = pair(&ring(2), &both).expect("the new key is accepted");
        let mut f = seal(&mut c, b"new");
        assert!(s.open(&mut f).is_ok());
        let mut g = seal(&mut s, b"back");
        assert!(c.open(&mut g).is_ok());
    }

    #[test]
    fn handshake_frames_of_the_wrong_kind_are_named() {
        let mut plain = Vec::new();
        write_frame(&mut plain, |b| {
            b.extend_from_slice(&MAGIC.to_be_bytes());
            b.push(VERSION);
            b.push(1);
        });
        let plain = frames(&plain).remove(0);
        let mut out = Vec::new();
        assert_eq!(
            accept(&ring(1), &plain, StreamNonce([0; 32]), &mut out).err(),
            Some(StreamError::Plain(1))
        );
        assert!(out.is_empty(), "nothing is answered to a refused hello");
        let mut refusal = Vec::new();
        write_key_required(&mut refusal);
        let refusal = frames(&refusal).remove(0);
        assert!(is_from_keyed_peer(&refusal));
        assert!(!is_from_keyed_peer(&plain));
        let hs = ClientHandshake::start(&ring(1), StreamNonce([0; 32]), &mut Vec::new());
        assert_eq!(hs.finish(&refusal).err(), Some(StreamError::KeyRequired));
        let hs = ClientHandshake::start(&ring(1), StreamNonce([0; 32]), &mut Vec::new());
        assert_eq!(hs.finish(&plain).err(), Some(StreamError::Plain(1)));
        let mut old = Vec::new();
        write_handshake(
            &mut old,
            KIND_STREAM_HELLO,
            key(1).id(),
            &StreamNonce([0; 32]),
        );
        let mut old = frames(&old).remove(0);
        old[2] = VERSION - 1;
        assert_eq!(
            accept(&ring(1), &old, StreamNonce([0; 32]), &mut out).err(),
            Some(StreamError::BadVersion(VERSION - 1))
        );
    }

    proptest! {
        #[test]
        fn any_run_of_frames_round_trips(bodies in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..300), 1..20)) {
            let (mut c, mut s) = pair(&ring(7), &ring(7)).expect("handshake");
            let mut wire = Vec::new();
            for b in &bodies {
                c.seal_frame(&mut wire, |o| o.extend_from_slice(b)).expect("seal");
            }
            let mut out = Vec::new();
            for (f, b) in frames(&wire).iter().zip(&bodies) {
                s.open_into(f, &mut out).expect("opens");
                prop_assert_eq!(&out, b);
            }
        }

        #[test]
        fn any_flipped_bit_is_refused(body in proptest::collection::vec(any::<u8>(), 0..200), bit in any::<usize>()) {
            let (mut c, mut s) = pair(&ring(7), &ring(7)).expect("handshake");
            let mut f = seal(&mut c, &body);
            let bit = bit % (f.len() * 8);
            f[bit / 8] ^= 1 << (bit % 8);
            prop_assert_eq!(s.open(&mut f), Err(StreamError::Forged));
        }

        #[test]
        fn garbage_never_opens_nor_panics(bytes in proptest::collection::vec(any::<u8>(), 0..200)) {
            let (_c, mut s) = pair(&ring(7), &ring(7)).expect("handshake");
            prop_assert!(s.open(&mut bytes.clone()).is_err());
            let mut out = Vec::new();
            let _ = accept(&ring(7), &bytes, StreamNonce([0; 32]), &mut out);
            let hs = ClientHandshake::start(&ring(7), StreamNonce([0; 32]), &mut Vec::new());
            let _ = hs.finish(&bytes);
        }
    }
}
