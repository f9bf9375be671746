use super::*;
use proptest::prelude::*;

fn key(b: u8) -> ClusterKey {
    ClusterKey::from_bytes(&[b; KEY_BYTES])
}

fn ring(b: u8) -> KeyRing {
    KeyRing::new(key(b), vec![])
}

fn sealed(s: &mut DatagramSealer, plain: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    s.seal(plain, &mut out);
    out
}

#[test]
fn a_sealed_datagram_opens_to_what_was_sealed_and_hides_it() {
    let mut s = DatagramSealer::new(&ring(1), SessionSalt([9; 16]));
    let mut o = DatagramOpener::new(ring(1));
    let plain = b"the payload in clear".repeat(5);
    let mut d = sealed(&mut s, &plain);
    assert_eq!(d.len(), plain.len() + SEAL_OVERHEAD_BYTES);
    assert!(!d.windows(b"payload".len()).any(|w| w == b"payload"));
    assert_eq!(o.open(&mut d), Ok(&plain[..]));
    assert_eq!(o.counts().opened, 1);
}

#[test]
fn a_replay_is_refused_and_a_late_one_inside_the_window_is_not() {
    let mut s = DatagramSealer::new(&ring(1), SessionSalt([9; 16]));
    let mut o = DatagramOpener::new(ring(1));
    let first = sealed(&mut s, b"one");
    let second = sealed(&mut s, b"two");
    assert!(o.open(&mut second.clone()).is_ok());
    assert!(
        o.open(&mut first.clone()).is_ok(),
        "reordered, inside the window"
    );
    assert_eq!(o.open(&mut first.clone()), Err(OpenError::Replayed(1)));
    assert_eq!(o.open(&mut second.clone()), Err(OpenError::Replayed(2)));
    assert_eq!(o.counts().replayed, 2);
}

#[test]
fn a_datagram_older_than_the_window_is_refused() {
    let mut s = DatagramSealer::new(&ring(1), SessionSalt([9; 16]));
    let mut o = DatagramOpener::new(ring(1));
    let old = sealed(&mut s, b"old");
    for _ in 0..REPLAY_WINDOW {
        let _ = sealed(&mut s, b"x");
    }
    let new = sealed(&mut s, b"new");
    assert!(o.open(&mut new.clone()).is_ok());
    assert_eq!(o.open(&mut old.clone()), Err(OpenError::TooOld(1)));
}

#[test]
fn every_flipped_bit_and_every_truncation_is_refused_and_moves_nothing() {
    let mut s = DatagramSealer::new(&ring(1), SessionSalt([3; 16]));
    let d = sealed(&mut s, b"hello, members");
    for i in 0..d.len() * 8 {
        let mut o = DatagramOpener::new(ring(1));
        let mut bad = d.clone();
        bad[i / 8] ^= 1 << (i % 8);
        assert!(o.open(&mut bad).is_err(), "bit {i} flipped was accepted");
        // The genuine one still opens: the forgery moved no window.
        assert!(o.open(&mut d.clone()).is_ok(), "bit {i}");
    }
    for n in 0..d.len() {
        let mut o = DatagramOpener::new(ring(1));
        assert!(o.open(&mut d[..n].to_vec()).is_err(), "truncated to {n}");
    }
}

#[test]
fn another_key_is_refused_by_id_and_a_forged_id_by_the_tag() {
    let mut s = DatagramSealer::new(&ring(2), SessionSalt([3; 16]));
    let mut o = DatagramOpener::new(ring(1));
    let mut d = sealed(&mut s, b"x");
    assert_eq!(
        o.open(&mut d.clone()),
        Err(OpenError::UnknownKey(key(2).id()))
    );
    // Claiming our key's id does not help without our key.
    d[4..8].copy_from_slice(&key(1).id().0.to_be_bytes());
    assert_eq!(o.open(&mut d), Err(OpenError::Forged));
    assert_eq!(o.counts().forged, 1);
}

#[test]
fn during_a_rotation_both_keys_open_and_the_current_one_seals() {
    let mut old_sealer = DatagramSealer::new(&ring(1), SessionSalt([1; 16]));
    let rotating = KeyRing::new(key(2), vec![key(1)]);
    let mut new_sealer = DatagramSealer::new(&rotating, SessionSalt([2; 16]));
    let mut o = DatagramOpener::new(rotating.clone());
    assert!(o.open(&mut sealed(&mut old_sealer, b"old key")).is_ok());
    assert!(o.open(&mut sealed(&mut new_sealer, b"new key")).is_ok());
    // A node that has not yet learned the new key refuses the new one.
    let mut behind = DatagramOpener::new(ring(1));
    assert_eq!(
        behind.open(&mut sealed(&mut new_sealer, b"new")),
        Err(OpenError::UnknownKey(key(2).id()))
    );
    assert_eq!(rotating.ids(), vec![key(2).id(), key(1).id()]);
}

#[test]
fn new_keys_keep_the_sessions_of_keys_still_held_and_retire_the_rest() {
    let mut old_sealer = DatagramSealer::new(&ring(1), SessionSalt([1; 16]));
    let mut o = DatagramOpener::new(ring(1));
    let first = sealed(&mut old_sealer, b"one");
    assert!(o.open(&mut first.clone()).is_ok());
    // Step 2 of a rotation: the new key accepted too. The old session's
    // replay window survives: the datagram already opened is a replay.
    o.set_keys(KeyRing::new(key(1), vec![key(2)]));
    assert_eq!(o.open(&mut first.clone()), Err(OpenError::Replayed(1)));
    assert!(o.open(&mut sealed(&mut old_sealer, b"two")).is_ok());
    let mut new_sealer = DatagramSealer::new(&ring(2), SessionSalt([2; 16]));
    assert_eq!(new_sealer.key_id(), key(2).id());
    assert!(o.open(&mut sealed(&mut new_sealer, b"new")).is_ok());
    // Step 4: the old key retired. Its live session opens nothing more.
    o.set_keys(ring(2));
    assert_eq!(
        o.open(&mut sealed(&mut old_sealer, b"three")),
        Err(OpenError::UnknownKey(key(1).id()))
    );
    assert!(o.open(&mut sealed(&mut new_sealer, b"new again")).is_ok());
    assert_eq!(o.keys().ids(), vec![key(2).id()]);
}

#[test]
fn a_plain_datagram_is_refused_as_unsealed() {
    let mut o = DatagramOpener::new(ring(1));
    let mut plain = vec![0xC0, 0xC5, VERSION, 1, 0, 0, 0, 1];
    plain.resize(80, 0);
    assert_eq!(o.open(&mut plain), Err(OpenError::NotSealed(1)));
}

#[test]
fn key_text_round_trips_and_bad_text_is_named() {
    let secret: [u8; KEY_BYTES] = std::array::from_fn(|i| i as u8 + 1);
    let text = ClusterKey::text_of(&secret);
    assert_eq!(
        ClusterKey::from_text(&text).map(|k| k.id()),
        Ok(ClusterKey::from_bytes(&secret).id())
    );
    assert_eq!(
        ClusterKey::from_text("").map(|k| k.id()),
        Err(KeyTextError::Empty)
    );
    assert_eq!(
        ClusterKey::from_text("abc").map(|k| k.id()),
        Err(KeyTextError::NoPrefix)
    );
    assert_eq!(
        ClusterKey::from_text(&text[..text.len() - 3]).map(|k| k.id()),
        Err(KeyTextError::WrongLength(62))
    );
    let bad = text.replacen('0', "g", 1);
    assert_eq!(
        ClusterKey::from_text(&bad).map(|k| k.id()),
        Err(KeyTextError::NotHex)
    );
    let zero = ClusterKey::text_of(&[0; KEY_BYTES]);
    assert_eq!(
        ClusterKey::from_text(&zero).map(|k| k.id()),
        Err(KeyTextError::AllZero)
    );
    // A multi-byte character where a hex digit belongs is refused, not a panic.
    let wide = format!("{KEY_TEXT_PREFIX}{}é", "a".repeat(62));
    assert!(ClusterKey::from_text(&wide).is_err());
}

#[test]
fn the_opener_forgets_the_least_recent_session_past_its_bound() {
    let mut o = DatagramOpener::new(ring(1));
    let mut first = DatagramSealer::new(&ring(1), SessionSalt([0; 16]));
    let replay = sealed(&mut first, b"first");
    assert!(o.open(&mut replay.clone()).is_ok());
    for i in 1..=MAX_SESSIONS as u32 {
        let mut salt = [0u8; 16];
        salt[..4].copy_from_slice(&i.to_be_bytes());
        let mut s = DatagramSealer::new(&ring(1), SessionSalt(salt));
        assert!(o.open(&mut sealed(&mut s, b"x")).is_ok());
    }
    assert_eq!(o.sessions.len(), MAX_SESSIONS);
    // The forgotten session's replay is authentic and opens: the protocol
    // treats it as the stale duplicate it is.
    assert!(o.open(&mut replay.clone()).is_ok());
}

proptest! {
    #[test]
    fn counters_never_repeat_and_every_reordering_inside_the_window_opens_once(
        n in 1usize..200,
        seed in any::<u64>(),
    ) {
        let mut s = DatagramSealer::new(&ring(7), SessionSalt(seed.to_be_bytes().repeat(2).try_into().unwrap_or([0; 16])));
        let mut all: Vec<Vec<u8>> = (0..n).map(|i| sealed(&mut s, &i.to_be_bytes())).collect();
        let nonces: std::collections::BTreeSet<Vec<u8>> = all.iter().map(|d| d[8..32].to_vec()).collect();
        prop_assert_eq!(nonces.len(), n);
        // A deterministic shuffle from the seed, then every datagram twice.
        let mut x = seed | 1;
        for i in (1..all.len()).rev() {
            x ^= x << 13; x ^= x >> 7; x ^= x << 17;
            all.swap(i, (x % (i as u64 + 1)) as usize);
        }
        let mut o = DatagramOpener::new(ring(7));
        let mut opened = std::collections::BTreeSet::new();
        for d in all.iter().chain(all.iter()) {
            if let Ok(p) = o.open(&mut d.clone()) {
                prop_assert!(opened.insert(p.to_vec()), "opened twice");
            }
        }
        prop_assert_eq!(opened.len(), n);
    }

    #[test]
    fn arbitrary_bytes_never_open(bytes in proptest::collection::vec(any::<u8>(), 0..200)) {
        let mut o = DatagramOpener::new(ring(7));
        let mut b = bytes.clone();
        prop_assert!(o.open(&mut b).is_err());
    }
}
