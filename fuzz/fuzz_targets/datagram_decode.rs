//! Any bytes as a datagram: decoding never panics, and whatever decodes
//! encodes back to something that decodes to the same datagram.
#![no_main]
#![forbid(unsafe_code)]

use chorus_proto::wire::datagram::{decode, encode};
use chorus_proto::ClusterId;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    // The cluster the receiver belongs to: the datagram's own (bytes 4..8)
    // so that most inputs get past the cluster check, or another one.
    let own = data
        .get(4..8)
        .map_or(0, |b| u32::from_be_bytes([b[0], b[1], b[2], b[3]]));
    for cluster in [ClusterId(own), ClusterId(own ^ 1)] {
        if let Ok(d) = decode(data, cluster) {
            let mut out = Vec::new();
            encode(&d, cluster, &mut out);
            let again = decode(&out, cluster).expect("re-encoded datagram decodes");
            assert_eq!(again, d);
        }
    }
});
