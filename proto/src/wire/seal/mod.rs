//! Sealing with the cluster key: every datagram between daemons is
//! encrypted and authenticated with AES-256-GCM under a key derived from the
//! cluster key, and a replayed one is refused.
//!
//! A sealed datagram:
//!
//! | bytes | field | in clear because |
//! |---|---|---|
//! | 2 | magic `0xC0C5` | a stray packet is told from ours without a key |
//! | 1 | version | a peer of another version is refused by name |
//! | 1 | kind `0x80` (sealed) | an unsealed cluster's datagram is told apart |
//! | 4 | key id | during a rotation the receiver picks the key without trying both |
//! | 16 | session salt | chosen at random by each sender at start: the key is derived from it |
//! | 8 | counter | the nonce, and the replay window's position |
//! | n | the datagram, encrypted | |
//! | 16 | tag | over the header (as associated data) and the ciphertext |
//!
//! Why a derived key per session rather than one key and random nonces:
//! GCM's 96-bit nonce is too short to draw at random for the life of a
//! cluster key, and a counter alone would repeat after a restart. Each
//! sender ([`DatagramSealer`]) draws a 128-bit salt when it starts and
//! derives its own AES key from the cluster key and that salt (HKDF-SHA256);
//! under that key the counter is the nonce. A nonce then never repeats under
//! one key, across restarts too, unless two salts collide (2^-64 after
//! 2^32 restarts). The salt is the caller's: the core draws no randomness.
//!
//! The receiver ([`DatagramOpener`]) keeps, per session it has heard from,
//! the derived key and a replay window of [`REPLAY_WINDOW`] counters. A
//! datagram is opened only after the window says its counter is new, and
//! the window moves only after the tag checked out, so a forgery moves
//! nothing. A replay from a session the opener has forgotten (it keeps the
//! [`MAX_SESSIONS`] most recent) is authentic and stale: the protocol
//! ignores it as it does a duplicate from the network.
//!
//! Byte streams (the directory link, the Raft port) are sealed by
//! [`stream`] with the same AEAD after a handshake.

use crate::wire::{MAGIC, VERSION};
use ring::aead::{Aad, LessSafeKey, Nonce, Tag, UnboundKey, AES_256_GCM};
use ring::hkdf;
use std::collections::HashMap;
use std::fmt;

/// The kind byte of a sealed datagram (plain kinds are below 0x80).
pub const KIND_SEALED: u8 = 0x80;
/// Bytes before the ciphertext.
pub const SEALED_HEADER_BYTES: usize = 2 + 1 + 1 + 4 + 16 + 8;
/// Bytes of the authentication tag.
pub const TAG_BYTES: usize = 16;
/// Bytes sealing adds to a datagram: what a sender leaves free of
/// `max_datagram_bytes`.
pub const SEAL_OVERHEAD_BYTES: usize = SEALED_HEADER_BYTES + TAG_BYTES;
/// Bytes of a cluster key.
pub const KEY_BYTES: usize = 32;
/// How far behind a session's newest counter a datagram may arrive. A
/// daemon reads its sockets in turns, so a sender's datagrams to one socket
/// may be read after later ones to another: the window spans a receive
/// buffer's worth of datagrams.
pub const REPLAY_WINDOW: u64 = 16 * 1024;
/// Sessions an opener remembers (two per daemon life: its IO and its
/// sequencer thread).
pub const MAX_SESSIONS: usize = 1024;

/// What a key file starts with, before the key in hex.
pub const KEY_TEXT_PREFIX: &str = "chorus-cluster-key-v1:";

/// HKDF salt for everything derived from a cluster key.
const DERIVE_SALT: &[u8] = b"chorus cluster key v1";

/// Which cluster key sealed a datagram or frame: derived from the key, so
/// it names the key without revealing it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct KeyId(pub u32);

impl fmt::Display for KeyId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:08x}", self.0)
    }
}

/// A sender's random salt, drawn once per sealer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct SessionSalt(pub [u8; 16]);

/// The cluster's shared secret. Its `Debug` shows only the key id.
#[derive(Clone)]
pub struct ClusterKey {
    prk: hkdf::Prk,
    id: KeyId,
}

impl fmt::Debug for ClusterKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ClusterKey({})", self.id)
    }
}

/// Why a key's text was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KeyTextError {
    #[error("it is empty")]
    Empty,
    #[error("it does not start with `{KEY_TEXT_PREFIX}` (make one with `chorusctl keygen PATH`)")]
    NoPrefix,
    #[error("the key is {0} hex digits long; a key is {n} (make one with `chorusctl keygen PATH`)", n = KEY_BYTES * 2)]
    WrongLength(usize),
    #[error("the key holds a character that is not a hex digit")]
    NotHex,
    #[error("the key is all zero bytes, which is no secret")]
    AllZero,
}

/// Derives `len` bytes for `info` from a key's PRK.
struct Len(usize);

impl hkdf::KeyType for Len {
    fn len(&self) -> usize {
        self.0
    }
}

impl ClusterKey {
    /// The key of these secret bytes.
    pub fn from_bytes(secret: &[u8; KEY_BYTES]) -> ClusterKey {
        let prk = hkdf::Salt::new(hkdf::HKDF_SHA256, DERIVE_SALT).extract(secret);
        let mut id = [0u8; 4];
        fill(&prk, &[b"key id"], &mut id);
        ClusterKey {
            prk,
            id: KeyId(u32::from_be_bytes(id)),
        }
    }

    /// Parses a key file's text: [`KEY_TEXT_PREFIX`], 64 hex digits,
    /// optional surrounding whitespace.
    pub fn from_text(text: &str) -> Result<ClusterKey, KeyTextError> {
        let t = text.trim();
        if t.is_empty() {
            return Err(KeyTextError::Empty);
        }
        let hex = t
            .strip_prefix(KEY_TEXT_PREFIX)
            .ok_or(KeyTextError::NoPrefix)?;
        if hex.len() != KEY_BYTES * 2 {
            return Err(KeyTextError::WrongLength(hex.len()));
        }
        let mut secret = [0u8; KEY_BYTES];
        for (i, b) in secret.iter_mut().enumerate() {
            let pair = hex.get(2 * i..2 * i + 2).ok_or(KeyTextError::NotHex)?;
            *b = u8::from_str_radix(pair, 16).map_err(|_| KeyTextError::NotHex)?;
        }
        if secret.iter().all(|&b| b == 0) {
            return Err(KeyTextError::AllZero);
        }
        Ok(ClusterKey::from_bytes(&secret))
    }

    /// The text a key file holds for these secret bytes (with a newline).
    pub fn text_of(secret: &[u8; KEY_BYTES]) -> String {
        let mut s = String::with_capacity(KEY_TEXT_PREFIX.len() + 2 * KEY_BYTES + 1);
        s.push_str(KEY_TEXT_PREFIX);
        for b in secret {
            s.push_str(&format!("{b:02x}"));
        }
        s.push('\n');
        s
    }

    /// The key's id, as sealed datagrams and frames carry it.
    pub fn id(&self) -> KeyId {
        self.id
    }

    /// An AES-256-GCM key derived for `info` (each part fed to HKDF).
    pub fn derive_aead(&self, info: &[&[u8]]) -> LessSafeKey {
        let mut k = [0u8; 32];
        fill(&self.prk, info, &mut k);
        // A 32-byte key is always accepted for AES-256-GCM.
        match UnboundKey::new(&AES_256_GCM, &k) {
            Ok(u) => LessSafeKey::new(u),
            Err(_) => unreachable!("AES-256-GCM takes a 32-byte key"),
        }
    }

    /// `out.len()` bytes derived for `info`: a handshake's proof.
    pub fn derive_bytes(&self, info: &[&[u8]], out: &mut [u8]) {
        fill(&self.prk, info, out);
    }
}

fn fill(prk: &hkdf::Prk, info: &[&[u8]], out: &mut [u8]) {
    let len = out.len();
    // HKDF-SHA256 expands to at most 255 * 32 bytes; callers ask for 32 or less.
    let ok = prk
        .expand(info, Len(len))
        .and_then(|okm| okm.fill(out))
        .is_ok();
    debug_assert!(ok, "HKDF expand of {len} bytes");
}

/// The keys a process holds: it seals with `current`, and opens with it or
/// with any of `also` (the old or the new key during a rotation).
#[derive(Debug, Clone)]
pub struct KeyRing {
    current: ClusterKey,
    also: Vec<ClusterKey>,
}

impl KeyRing {
    /// A ring that seals with `current` and also opens with `also`.
    pub fn new(current: ClusterKey, also: Vec<ClusterKey>) -> KeyRing {
        let also = also.into_iter().filter(|k| k.id != current.id).collect();
        KeyRing { current, also }
    }

    /// The key this process seals with.
    pub fn current(&self) -> &ClusterKey {
        &self.current
    }

    /// The key with this id, if this process holds it.
    pub fn get(&self, id: KeyId) -> Option<&ClusterKey> {
        std::iter::once(&self.current)
            .chain(self.also.iter())
            .find(|k| k.id == id)
    }

    /// Ids of every key held, the current one first.
    pub fn ids(&self) -> Vec<KeyId> {
        std::iter::once(&self.current)
            .chain(self.also.iter())
            .map(|k| k.id)
            .collect()
    }
}

fn session_key(key: &ClusterKey, salt: &SessionSalt) -> LessSafeKey {
    key.derive_aead(&[b"datagram", &salt.0])
}

fn nonce_of(counter: u64) -> Nonce {
    let mut n = [0u8; 12];
    n[4..].copy_from_slice(&counter.to_be_bytes());
    Nonce::assume_unique_for_key(n)
}

/// One sender's sealing state: a derived key and a counter that never
/// repeats under it.
pub struct DatagramSealer {
    key_id: KeyId,
    salt: SessionSalt,
    aead: LessSafeKey,
    next: u64,
}

impl fmt::Debug for DatagramSealer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DatagramSealer")
            .field("key_id", &self.key_id)
            .field("next", &self.next)
            .finish_non_exhaustive()
    }
}

impl DatagramSealer {
    /// A sealer under `keys`' current key with a salt drawn by the caller
    /// from a cryptographic random source.
    pub fn new(keys: &KeyRing, salt: SessionSalt) -> DatagramSealer {
        DatagramSealer {
            key_id: keys.current.id,
            salt,
            aead: session_key(&keys.current, &salt),
            next: 1,
        }
    }

    /// The id of the key this sealer seals with.
    pub fn key_id(&self) -> KeyId {
        self.key_id
    }

    /// Datagrams sealed so far.
    pub fn sealed(&self) -> u64 {
        self.next - 1
    }

    /// Writes the sealed form of `plain` into `out` (cleared first).
    pub fn seal(&mut self, plain: &[u8], out: &mut Vec<u8>) {
        let counter = self.next;
        self.next += 1;
        out.clear();
        out.reserve(SEAL_OVERHEAD_BYTES + plain.len());
        out.extend_from_slice(&MAGIC.to_be_bytes());
        out.push(VERSION);
        out.push(KIND_SEALED);
        out.extend_from_slice(&self.key_id.0.to_be_bytes());
        out.extend_from_slice(&self.salt.0);
        out.extend_from_slice(&counter.to_be_bytes());
        out.extend_from_slice(plain);
        let (header, body) = out.split_at_mut(SEALED_HEADER_BYTES);
        // Sealing fails only for a message longer than GCM allows (64 GiB).
        let tag =
            match self
                .aead
                .seal_in_place_separate_tag(nonce_of(counter), Aad::from(&*header), body)
            {
                Ok(t) => t,
                Err(_) => unreachable!("a datagram is shorter than GCM's limit"),
            };
        out.extend_from_slice(tag.as_ref());
    }
}

/// One sending thread's sealing state in a keyed cluster: its own session
/// (a salt its caller drew, so that no other thread or life shares its
/// nonces) and the opener of everything that thread receives. chorusd's IO
/// thread and sequencer thread each hold one, and so does each simulated
/// host and sequencer: the edge seals and opens the same way in both.
#[derive(Debug)]
pub struct DatagramSeal {
    sealer: DatagramSealer,
    opener: DatagramOpener,
    /// The sealed form of the datagram being sent.
    out: Vec<u8>,
}

impl DatagramSeal {
    /// A session under `keys`' current key with `salt`, drawn by the caller
    /// from a cryptographic random source (the simulator derives it from
    /// the node and its life, which are unique in a run).
    pub fn new(keys: &KeyRing, salt: SessionSalt) -> DatagramSeal {
        DatagramSeal {
            sealer: DatagramSealer::new(keys, salt),
            opener: DatagramOpener::new(keys.clone()),
            out: Vec::with_capacity(2048),
        }
    }

    /// The sealed form of `plain`, valid until the next call.
    pub fn seal(&mut self, plain: &[u8]) -> &[u8] {
        self.sealer.seal(plain, &mut self.out);
        &self.out
    }

    /// Opens a received datagram in place: see [`DatagramOpener::open`].
    pub fn open<'a>(&mut self, datagram: &'a mut [u8]) -> Result<&'a [u8], OpenError> {
        self.opener.open(datagram)
    }

    /// Takes `keys` (a rotation step): opens with them from now on and, if
    /// the key to seal with changed, seals under it in a session of its own
    /// (`salt` drawn by the caller, counters from 1). Returns whether the
    /// key to seal with changed (and `salt` was used).
    pub fn rekey(&mut self, keys: &KeyRing, salt: SessionSalt) -> bool {
        let changed = self.sealer.key_id() != keys.current().id();
        if changed {
            self.sealer = DatagramSealer::new(keys, salt);
        }
        self.opener.set_keys(keys.clone());
        changed
    }

    /// Plants a bug (simulator tests only): see
    /// [`DatagramOpener::plant_no_replay_window`].
    pub fn plant_no_replay_window(&mut self) {
        self.opener.plant_no_replay_window();
    }

    /// The sealer's state (its key and count).
    pub fn sealer(&self) -> &DatagramSealer {
        &self.sealer
    }

    /// What the opener has opened and refused so far.
    pub fn counts(&self) -> OpenCounts {
        self.opener.counts()
    }
}

/// Why a datagram was not opened. Every case is dropped before the
/// protocol sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum OpenError {
    #[error("{0} bytes, shorter than a sealed datagram's header and tag")]
    TooShort(usize),
    #[error("not a chorus datagram (magic {0:#06x})")]
    BadMagic(u16),
    #[error("protocol version {0}, this daemon speaks {VERSION}")]
    BadVersion(u8),
    #[error("not sealed (kind {0}): the sender runs without a cluster key")]
    NotSealed(u8),
    #[error("sealed with key {0}, which this daemon does not hold")]
    UnknownKey(KeyId),
    #[error("authentication failed: forged, altered or sealed with another key")]
    Forged,
    #[error("a replay: counter {0} was already received from this sender")]
    Replayed(u64),
    #[error("counter {0} is older than the replay window")]
    TooOld(u64),
}

/// Which [`OpenError`]s an opener has counted.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct OpenCounts {
    pub opened: u64,
    /// Not ours at all: wrong magic or too short.
    pub foreign: u64,
    /// Another version, unsealed, or a key this process does not hold.
    pub refused: u64,
    /// The tag did not check out.
    pub forged: u64,
    /// Already received, or older than the window.
    pub replayed: u64,
}

/// A session's replay window: the newest counter accepted and a bitmap of
/// the [`REPLAY_WINDOW`] counters up to it.
#[derive(Debug, Clone)]
pub struct ReplayWindow {
    newest: u64,
    bits: Vec<u64>,
}

impl Default for ReplayWindow {
    fn default() -> Self {
        ReplayWindow {
            newest: 0,
            bits: vec![0; (REPLAY_WINDOW / 64) as usize],
        }
    }
}

impl ReplayWindow {
    fn slot(&self, c: u64) -> (usize, u64) {
        let i = c % REPLAY_WINDOW;
        ((i / 64) as usize, 1u64 << (i % 64))
    }

    /// Whether `c` may still be accepted (not seen, not too old).
    pub fn check(&self, c: u64) -> Result<(), OpenError> {
        if c == 0 {
            return Err(OpenError::TooOld(c));
        }
        if c > self.newest {
            return Ok(());
        }
        if self.newest - c >= REPLAY_WINDOW {
            return Err(OpenError::TooOld(c));
        }
        let (w, b) = self.slot(c);
        if self.bits[w] & b != 0 {
            return Err(OpenError::Replayed(c));
        }
        Ok(())
    }

    /// Marks `c` received (after [`ReplayWindow::check`] passed and the tag
    /// checked out).
    pub fn accept(&mut self, c: u64) {
        if c > self.newest {
            let ahead = c - self.newest;
            if ahead >= REPLAY_WINDOW {
                self.bits.iter_mut().for_each(|w| *w = 0);
            } else {
                for s in self.newest + 1..c {
                    let (w, b) = self.slot(s);
                    self.bits[w] &= !b;
                }
            }
            self.newest = c;
        }
        let (w, b) = self.slot(c);
        self.bits[w] |= b;
    }
}

struct Session {
    aead: LessSafeKey,
    window: ReplayWindow,
    used: u64,
}

/// A receiver's opening state: the keys it holds and what it has received
/// from each sender's session.
pub struct DatagramOpener {
    keys: KeyRing,
    sessions: HashMap<(KeyId, SessionSalt), Session>,
    tick: u64,
    counts: OpenCounts,
    /// A bug planted on purpose (the simulator's checker of replays must
    /// catch it): replays open. Honoured only with the `planted` feature.
    planted_no_replay_window: bool,
}

impl fmt::Debug for DatagramOpener {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DatagramOpener")
            .field("keys", &self.keys.ids())
            .field("sessions", &self.sessions.len())
            .field("counts", &self.counts)
            .finish()
    }
}

impl DatagramOpener {
    /// An opener that accepts datagrams sealed under any key of `keys`.
    pub fn new(keys: KeyRing) -> DatagramOpener {
        DatagramOpener {
            keys,
            sessions: HashMap::new(),
            tick: 0,
            counts: OpenCounts::default(),
            planted_no_replay_window: false,
        }
    }

    /// Plants a bug (simulator tests only; a no-op without the `planted`
    /// feature): the replay window is not consulted, so a replay opens.
    pub fn plant_no_replay_window(&mut self) {
        self.planted_no_replay_window = cfg!(feature = "planted");
    }

    /// Opens with `keys` from now on (a rotation step read on SIGHUP).
    /// The sessions under keys still held go on with their replay windows;
    /// those under a key no longer held are forgotten, so that a retired
    /// key opens nothing more.
    pub fn set_keys(&mut self, keys: KeyRing) {
        self.sessions.retain(|(id, _), _| keys.get(*id).is_some());
        self.keys = keys;
    }

    /// The keys this opener accepts.
    pub fn keys(&self) -> &KeyRing {
        &self.keys
    }

    /// What this opener has opened and refused so far.
    pub fn counts(&self) -> OpenCounts {
        self.counts
    }

    /// Opens a sealed datagram in place and returns the datagram inside, or
    /// why it was refused. Nothing is remembered of a refused datagram.
    pub fn open<'a>(&mut self, datagram: &'a mut [u8]) -> Result<&'a [u8], OpenError> {
        let r = self.open_inner(datagram);
        match &r {
            Ok(_) => self.counts.opened += 1,
            Err(OpenError::TooShort(_) | OpenError::BadMagic(_)) => self.counts.foreign += 1,
            Err(OpenError::BadVersion(_) | OpenError::NotSealed(_) | OpenError::UnknownKey(_)) => {
                self.counts.refused += 1
            }
            Err(OpenError::Forged) => self.counts.forged += 1,
            Err(OpenError::Replayed(_) | OpenError::TooOld(_)) => self.counts.replayed += 1,
        }
        r
    }

    fn open_inner<'a>(&mut self, d: &'a mut [u8]) -> Result<&'a [u8], OpenError> {
        let len = d.len();
        if len < 4 {
            return Err(OpenError::TooShort(len));
        }
        let magic = u16::from_be_bytes([d[0], d[1]]);
        if magic != MAGIC {
            return Err(OpenError::BadMagic(magic));
        }
        if d[2] != VERSION {
            return Err(OpenError::BadVersion(d[2]));
        }
        if d[3] != KIND_SEALED {
            return Err(OpenError::NotSealed(d[3]));
        }
        if len < SEAL_OVERHEAD_BYTES {
            return Err(OpenError::TooShort(len));
        }
        let key_id = KeyId(u32::from_be_bytes([d[4], d[5], d[6], d[7]]));
        let mut salt = [0u8; 16];
        salt.copy_from_slice(&d[8..24]);
        let salt = SessionSalt(salt);
        let mut c = [0u8; 8];
        c.copy_from_slice(&d[24..32]);
        let counter = u64::from_be_bytes(c);
        self.tick += 1;
        let tick = self.tick;
        let (header, rest) = d.split_at_mut(SEALED_HEADER_BYTES);
        let (body, tag) = rest.split_at_mut(rest.len() - TAG_BYTES);
        let tag: [u8; TAG_BYTES] = match (&*tag).try_into() {
            Ok(t) => t,
            Err(_) => return Err(OpenError::TooShort(len)),
        };
        let window_off = self.planted_no_replay_window;
        let known = self.sessions.get_mut(&(key_id, salt));
        let fresh;
        let session = match known {
            Some(s) => s,
            None => {
                let key = self.keys.get(key_id).ok_or(OpenError::UnknownKey(key_id))?;
                fresh = Session {
                    aead: session_key(key, &salt),
                    window: ReplayWindow::default(),
                    used: tick,
                };
                return self.open_new(key_id, salt, fresh, counter, header, body, tag);
            }
        };
        if !window_off {
            session.window.check(counter)?;
        }
        session
            .aead
            .open_in_place_separate_tag(
                nonce_of(counter),
                Aad::from(&*header),
                Tag::from(tag),
                body,
                0..,
            )
            .map_err(|_| OpenError::Forged)?;
        session.window.accept(counter);
        session.used = tick;
        Ok(body)
    }

    #[allow(clippy::too_many_arguments)]
    fn open_new<'a>(
        &mut self,
        key_id: KeyId,
        salt: SessionSalt,
        mut s: Session,
        counter: u64,
        header: &[u8],
        body: &'a mut [u8],
        tag: [u8; TAG_BYTES],
    ) -> Result<&'a [u8], OpenError> {
        if !self.planted_no_replay_window {
            s.window.check(counter)?;
        }
        s.aead
            .open_in_place_separate_tag(
                nonce_of(counter),
                Aad::from(header),
                Tag::from(tag),
                body,
                0..,
            )
            .map_err(|_| OpenError::Forged)?;
        s.window.accept(counter);
        if self.sessions.len() >= MAX_SESSIONS {
            // Only authentic senders get here, so this is rare: a scan is cheap.
            if let Some(oldest) = self
                .sessions
                .iter()
                .min_by_key(|(_, v)| v.used)
                .map(|(k, _)| *k)
            {
                self.sessions.remove(&oldest);
            }
        }
        self.sessions.insert((key_id, salt), s);
        Ok(body)
    }
}

pub mod stream;

#[cfg(test)]
mod tests;
