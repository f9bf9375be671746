//! Length-prefixed frames on byte streams (TCP to the directory, Unix socket to apps).

use super::DecodeError;

/// Reassembles frames from a byte stream: a 4-byte big-endian length, then the body.
#[derive(Debug)]
pub struct FrameBuffer {
    buf: Vec<u8>,
    start: usize,
    max_frame_bytes: usize,
}

impl FrameBuffer {
    /// A buffer that rejects frames longer than `max_frame_bytes`.
    pub fn new(max_frame_bytes: usize) -> Self {
        FrameBuffer {
            buf: Vec::new(),
            start: 0,
            max_frame_bytes,
        }
    }

    /// Appends bytes read from the stream.
    pub fn extend(&mut self, bytes: &[u8]) {
        if self.start > 0 && self.start == self.buf.len() {
            self.buf.clear();
            self.start = 0;
        } else if self.start > 64 * 1024 {
            self.buf.drain(..self.start);
            self.start = 0;
        }
        self.buf.extend_from_slice(bytes);
    }

    /// Bytes held that do not yet form a whole frame.
    pub fn pending_bytes(&self) -> usize {
        self.buf.len() - self.start
    }

    /// The next whole frame body, if one has arrived. An oversize length is an
    /// error: the stream cannot be resynchronised, so the caller drops the peer.
    pub fn next_frame(&mut self) -> Result<Option<&[u8]>, DecodeError> {
        let avail = &self.buf[self.start..];
        if avail.len() < 4 {
            return Ok(None);
        }
        let len = u32::from_be_bytes([avail[0], avail[1], avail[2], avail[3]]) as usize;
        if len > self.max_frame_bytes {
            return Err(DecodeError::TooLong(len));
        }
        if avail.len() < 4 + len {
            return Ok(None);
        }
        let body_start = self.start + 4;
        self.start = body_start + len;
        Ok(Some(&self.buf[body_start..body_start + len]))
    }
}

/// Appends one frame (length prefix and body) to `out`; `body` writes the body.
pub fn write_frame(out: &mut Vec<u8>, body: impl FnOnce(&mut Vec<u8>)) {
    let at = out.len();
    out.extend_from_slice(&[0, 0, 0, 0]);
    body(out);
    let len = (out.len() - at - 4) as u32;
    out[at..at + 4].copy_from_slice(&len.to_be_bytes());
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_split_across_reads_reassemble() {
        let mut out = Vec::new();
        write_frame(&mut out, |b| b.extend_from_slice(b"hello"));
        write_frame(&mut out, |b| b.extend_from_slice(b""));
        write_frame(&mut out, |b| b.extend_from_slice(b"world!"));
        let mut fb = FrameBuffer::new(100);
        let mut got = Vec::new();
        for chunk in out.chunks(3) {
            fb.extend(chunk);
            while let Some(f) = fb.next_frame().expect("frame") {
                got.push(f.to_vec());
            }
        }
        assert_eq!(got, vec![b"hello".to_vec(), vec![], b"world!".to_vec()]);
        assert_eq!(fb.pending_bytes(), 0);
    }

    #[test]
    fn oversize_frame_is_rejected() {
        let mut fb = FrameBuffer::new(4);
        fb.extend(&[0, 0, 0, 5, 1, 2, 3, 4, 5]);
        assert_eq!(fb.next_frame(), Err(DecodeError::TooLong(5)));
    }
}
