//! Bounds-checked reading and plain writing of big-endian fields.

use thiserror::Error;

/// Why a datagram or frame was rejected. Decoding never changes state.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum DecodeError {
    /// The input ended before a field did.
    #[error("truncated: needed {needed} more bytes at offset {offset}")]
    Truncated { offset: usize, needed: usize },
    /// The magic number is not chorus's.
    #[error("bad magic {0:#06x}")]
    BadMagic(u16),
    /// A protocol version this build does not speak.
    #[error("unsupported version {0}")]
    BadVersion(u8),
    /// An unknown message kind.
    #[error("unknown kind {0}")]
    UnknownKind(u8),
    /// A field holds a value outside its domain (named).
    #[error("invalid {0}")]
    Invalid(&'static str),
    /// A string field is not UTF-8.
    #[error("field {0} is not UTF-8")]
    NotUtf8(&'static str),
    /// Bytes were left over after the last field.
    #[error("{0} trailing bytes")]
    Trailing(usize),
    /// A frame longer than the limit.
    #[error("frame of {0} bytes exceeds the limit")]
    TooLong(usize),
}

/// A cursor over input bytes. Every read checks bounds.
#[derive(Debug)]
pub struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    /// Starts at the beginning of `buf`.
    pub fn new(buf: &'a [u8]) -> Self {
        Reader { buf, pos: 0 }
    }

    /// Bytes not yet read.
    pub fn remaining(&self) -> usize {
        self.buf.len() - self.pos
    }

    /// Takes the next `n` bytes.
    pub fn bytes(&mut self, n: usize) -> Result<&'a [u8], DecodeError> {
        if self.remaining() < n {
            return Err(DecodeError::Truncated {
                offset: self.pos,
                needed: n - self.remaining(),
            });
        }
        let out = &self.buf[self.pos..self.pos + n];
        self.pos += n;
        Ok(out)
    }

    /// Reads one byte.
    pub fn u8(&mut self) -> Result<u8, DecodeError> {
        Ok(self.bytes(1)?[0])
    }

    /// Reads a big-endian u16.
    pub fn u16(&mut self) -> Result<u16, DecodeError> {
        let b = self.bytes(2)?;
        Ok(u16::from_be_bytes([b[0], b[1]]))
    }

    /// Reads a big-endian u32.
    pub fn u32(&mut self) -> Result<u32, DecodeError> {
        let b = self.bytes(4)?;
        Ok(u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
    }

    /// Reads a big-endian u64.
    pub fn u64(&mut self) -> Result<u64, DecodeError> {
        let b = self.bytes(8)?;
        let mut a = [0u8; 8];
        a.copy_from_slice(b);
        Ok(u64::from_be_bytes(a))
    }

    /// Reads a bool encoded as 0 or 1.
    pub fn bool(&mut self, field: &'static str) -> Result<bool, DecodeError> {
        match self.u8()? {
            0 => Ok(false),
            1 => Ok(true),
            _ => Err(DecodeError::Invalid(field)),
        }
    }

    /// Reads a string with a u8 length prefix.
    pub fn str8(&mut self, field: &'static str) -> Result<&'a str, DecodeError> {
        let n = self.u8()? as usize;
        std::str::from_utf8(self.bytes(n)?).map_err(|_| DecodeError::NotUtf8(field))
    }

    /// Reads a string with a u16 length prefix.
    pub fn str16(&mut self, field: &'static str) -> Result<&'a str, DecodeError> {
        let n = self.u16()? as usize;
        std::str::from_utf8(self.bytes(n)?).map_err(|_| DecodeError::NotUtf8(field))
    }

    /// Reads bytes with a u32 length prefix.
    pub fn bytes32(&mut self) -> Result<&'a [u8], DecodeError> {
        let n = self.u32()? as usize;
        self.bytes(n)
    }

    /// Reads bytes with a u16 length prefix.
    pub fn bytes16(&mut self) -> Result<&'a [u8], DecodeError> {
        let n = self.u16()? as usize;
        self.bytes(n)
    }

    /// Fails unless every byte was consumed.
    pub fn finish(&self) -> Result<(), DecodeError> {
        match self.remaining() {
            0 => Ok(()),
            n => Err(DecodeError::Trailing(n)),
        }
    }
}

/// Appends big-endian fields to a caller-owned buffer.
pub trait Put {
    /// Appends one byte.
    fn put_u8(&mut self, v: u8);
    /// Appends a big-endian u16.
    fn put_u16(&mut self, v: u16);
    /// Appends a big-endian u32.
    fn put_u32(&mut self, v: u32);
    /// Appends a big-endian u64.
    fn put_u64(&mut self, v: u64);
    /// Appends a string with a u8 length prefix (truncated to 255 bytes at a char boundary).
    fn put_str8(&mut self, s: &str);
    /// Appends a string with a u16 length prefix (truncated to 65535 bytes at a char boundary).
    fn put_str16(&mut self, s: &str);
    /// Appends bytes with a u32 length prefix.
    fn put_bytes32(&mut self, b: &[u8]);
    /// Appends bytes with a u16 length prefix (caller guarantees len <= 65535).
    fn put_bytes16(&mut self, b: &[u8]);
}

fn clip(s: &str, max: usize) -> &str {
    if s.len() <= max {
        return s;
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

impl Put for Vec<u8> {
    fn put_u8(&mut self, v: u8) {
        self.push(v);
    }
    fn put_u16(&mut self, v: u16) {
        self.extend_from_slice(&v.to_be_bytes());
    }
    fn put_u32(&mut self, v: u32) {
        self.extend_from_slice(&v.to_be_bytes());
    }
    fn put_u64(&mut self, v: u64) {
        self.extend_from_slice(&v.to_be_bytes());
    }
    fn put_str8(&mut self, s: &str) {
        let s = clip(s, u8::MAX as usize);
        self.push(s.len() as u8);
        self.extend_from_slice(s.as_bytes());
    }
    fn put_str16(&mut self, s: &str) {
        let s = clip(s, u16::MAX as usize);
        self.put_u16(s.len() as u16);
        self.extend_from_slice(s.as_bytes());
    }
    fn put_bytes32(&mut self, b: &[u8]) {
        self.put_u32(b.len() as u32);
        self.extend_from_slice(b);
    }
    fn put_bytes16(&mut self, b: &[u8]) {
        debug_assert!(b.len() <= u16::MAX as usize);
        self.put_u16(b.len() as u16);
        self.extend_from_slice(b);
    }
}
