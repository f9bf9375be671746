//! The authenticated datagram decoder: any bytes given to an opener never
//! panic and never open; a datagram sealed here opens to what was sealed,
//! once, and any change to it (the fuzzer's bytes say where and how) is
//! refused without moving the replay window.
#![no_main]
#![forbid(unsafe_code)]

use chorus_proto::wire::datagram::decode;
use chorus_proto::wire::seal::{
    ClusterKey, DatagramOpener, DatagramSealer, KeyRing, OpenError, SessionSalt,
};
use chorus_proto::ClusterId;
use libfuzzer_sys::fuzz_target;

fn ring() -> KeyRing {
    KeyRing::new(ClusterKey::from_bytes(&[0x42; 32]), vec![ClusterKey::from_bytes(&[7; 32])])
}

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    let mut opener = DatagramOpener::new(ring());
    if mode & 1 == 0 {
        // Bytes from the network: without the key they cannot open.
        let mut bytes = rest.to_vec();
        assert!(opener.open(&mut bytes).is_err(), "forged bytes opened");
        return;
    }
    // A genuine datagram, then the fuzzer's change to it.
    let (change, plain) = rest.split_at(rest.len().min(4));
    let mut sealer = DatagramSealer::new(&ring(), SessionSalt([mode; 16]));
    let mut sealed = Vec::new();
    sealer.seal(plain, &mut sealed);
    let mut altered = sealed.clone();
    let at = change.first().map_or(0, |&b| usize::from(b)) % sealed.len();
    let bit = change.get(1).map_or(1, |&b| 1u8 << (b % 8));
    match change.get(2).map_or(0, |&b| b % 3) {
        0 => altered[at] ^= bit,
        1 => altered.truncate(at),
        _ => altered.extend_from_slice(change),
    }
    assert!(opener.open(&mut altered).is_err(), "an altered datagram opened");
    let mut copy = sealed.clone();
    let opened = opener.open(&mut copy).expect("the genuine datagram opens");
    assert_eq!(opened, plain);
    // Whatever it holds, the protocol's decoder takes it without a panic.
    let _ = decode(opened, ClusterId(1));
    let mut again = sealed;
    assert!(matches!(opener.open(&mut again), Err(OpenError::Replayed(1))));
});
