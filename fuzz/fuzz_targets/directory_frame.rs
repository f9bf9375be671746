//! Any bytes as a daemon<->directory frame body (both directions), and as a
//! stream of length-prefixed frames: nothing panics, and what decodes
//! round-trips.
#![no_main]
#![forbid(unsafe_code)]

use chorus_proto::wire::directory::{FromDirectory, ToDirectory, DIRECTORY_FRAME_MAX_BYTES};
use chorus_proto::wire::frame::FrameBuffer;
use libfuzzer_sys::fuzz_target;

fn check(body: &[u8]) {
    if let Ok(m) = ToDirectory::decode(body) {
        let mut out = Vec::new();
        m.encode(&mut out);
        assert_eq!(ToDirectory::decode(&out).ok(), Some(m));
    }
    if let Ok(m) = FromDirectory::decode(body) {
        let mut out = Vec::new();
        m.encode(&mut out);
        assert_eq!(FromDirectory::decode(&out).ok(), Some(m));
    }
}

fuzz_target!(|data: &[u8]| {
    check(data);
    let mut frames = FrameBuffer::new(DIRECTORY_FRAME_MAX_BYTES);
    for chunk in data.chunks(7) {
        frames.extend(chunk);
        while let Ok(Some(body)) = frames.next_frame() {
            let body = body.to_vec();
            check(&body);
        }
    }
});
