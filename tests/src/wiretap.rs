//! What an attacker on the cluster's network sees and can do: the UDP
//! datagrams captured on the namespace bridge, stored in a file, and sent
//! again as they were or altered (`chorus-wiretap`).
//!
//! The capture file is a sequence of records: destination IPv4 (4 bytes),
//! destination port (2), source IPv4 (4), source port (2), payload length
//! (u32, big-endian), payload.

use std::io::{self, Read, Write};
use std::net::{Ipv4Addr, SocketAddrV4};
use std::path::Path;

/// One captured UDP datagram.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Captured {
    pub dst: SocketAddrV4,
    pub src: SocketAddrV4,
    pub payload: Vec<u8>,
}

/// The UDP datagram in an Ethernet frame, if it holds one (IPv4, not a
/// fragment).
pub fn udp_in_frame(frame: &[u8]) -> Option<Captured> {
    let ether_type = u16::from_be_bytes([*frame.get(12)?, *frame.get(13)?]);
    if ether_type != 0x0800 {
        return None;
    }
    let ip = frame.get(14..)?;
    let ihl = usize::from(ip.first()? & 0x0F) * 4;
    if ihl < 20 || *ip.get(9)? != 17 {
        return None;
    }
    let flags_frag = u16::from_be_bytes([*ip.get(6)?, *ip.get(7)?]);
    if flags_frag & 0x3FFF != 0 {
        return None; // a fragment: chorus sends none
    }
    let total = usize::from(u16::from_be_bytes([*ip.get(2)?, *ip.get(3)?]));
    let src_ip = Ipv4Addr::new(ip[12], ip[13], ip[14], ip[15]);
    let dst_ip = Ipv4Addr::new(*ip.get(16)?, ip[17], ip[18], ip[19]);
    let udp = ip.get(ihl..total.min(ip.len()))?;
    let src_port = u16::from_be_bytes([*udp.first()?, *udp.get(1)?]);
    let dst_port = u16::from_be_bytes([*udp.get(2)?, *udp.get(3)?]);
    let payload = udp.get(8..)?.to_vec();
    Some(Captured {
        dst: SocketAddrV4::new(dst_ip, dst_port),
        src: SocketAddrV4::new(src_ip, src_port),
        payload,
    })
}

/// Appends one record to a capture file.
pub fn write_record(out: &mut impl Write, c: &Captured) -> io::Result<()> {
    out.write_all(&c.dst.ip().octets())?;
    out.write_all(&c.dst.port().to_be_bytes())?;
    out.write_all(&c.src.ip().octets())?;
    out.write_all(&c.src.port().to_be_bytes())?;
    out.write_all(&(c.payload.len() as u32).to_be_bytes())?;
    out.write_all(&c.payload)
}

/// Every record of a capture file.
pub fn read_capture(path: &Path) -> io::Result<Vec<Captured>> {
    let mut bytes = Vec::new();
    std::fs::File::open(path)?.read_to_end(&mut bytes)?;
    let mut out = Vec::new();
    let mut at = 0;
    let bad = || io::Error::new(io::ErrorKind::InvalidData, "truncated capture record");
    while at < bytes.len() {
        let h = bytes.get(at..at + 16).ok_or_else(bad)?;
        let dst = SocketAddrV4::new(
            Ipv4Addr::new(h[0], h[1], h[2], h[3]),
            u16::from_be_bytes([h[4], h[5]]),
        );
        let src = SocketAddrV4::new(
            Ipv4Addr::new(h[6], h[7], h[8], h[9]),
            u16::from_be_bytes([h[10], h[11]]),
        );
        let len = u32::from_be_bytes([h[12], h[13], h[14], h[15]]) as usize;
        let payload = bytes.get(at + 16..at + 16 + len).ok_or_else(bad)?.to_vec();
        at += 16 + len;
        out.push(Captured { dst, src, payload });
    }
    Ok(out)
}

/// The ways an attacker alters a captured datagram before sending it: each
/// must be refused as unauthentic.
pub fn alterations(d: &[u8]) -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    let n = d.len();
    for at in [n / 2, n.saturating_sub(1), 5, 30] {
        if at < n {
            let mut a = d.to_vec();
            a[at] ^= 0x20;
            out.push(a);
        }
    }
    if n > 16 {
        out.push(d[..n - 16].to_vec()); // the tag cut off
        out.push(d[..n - 1].to_vec());
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_udp_frame_is_parsed_and_a_record_round_trips() {
        let mut f = vec![0u8; 14];
        f[12] = 0x08;
        let payload = b"hello";
        let total = 20 + 8 + payload.len();
        let mut ip = vec![
            0x45,
            0,
            (total >> 8) as u8,
            total as u8,
            0,
            0,
            0x40,
            0,
            64,
            17,
            0,
            0,
        ];
        ip.extend_from_slice(&[10, 0, 0, 1, 239, 1, 2, 3]);
        f.extend_from_slice(&ip);
        f.extend_from_slice(&[0x1c, 0xe9, 0x1c, 0xf2, 0, 13, 0, 0]);
        f.extend_from_slice(payload);
        let c = udp_in_frame(&f).expect("udp");
        assert_eq!(c.dst, "239.1.2.3:7410".parse().unwrap());
        assert_eq!(c.src, "10.0.0.1:7401".parse().unwrap());
        assert_eq!(c.payload, payload);
        let dir = std::env::temp_dir().join(format!("wiretap-{}", std::process::id()));
        let mut file = std::fs::File::create(&dir).unwrap();
        write_record(&mut file, &c).unwrap();
        write_record(&mut file, &c).unwrap();
        drop(file);
        assert_eq!(read_capture(&dir).unwrap(), vec![c.clone(), c]);
        let _ = std::fs::remove_file(&dir);
        f[12] = 0x86;
        assert!(udp_in_frame(&f).is_none());
    }
}
