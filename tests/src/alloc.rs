//! Ports and multicast groups that do not clash between concurrent tests.
//!
//! Several tests (threads of one test binary, or several binaries) may run at
//! once on the same loopback interface. On Linux a UDP socket bound to a port
//! can receive the multicast of every group joined on that port, so each test
//! gets its own group address *and* port. The choice is a hash of the test
//! name, the process id and a counter: different for concurrent tests,
//! reproducible enough to recognise in logs, and checked free before use.

use std::collections::hash_map::DefaultHasher;
use std::hash::{Hash, Hasher};
use std::net::{Ipv4Addr, SocketAddrV4, TcpListener, UdpSocket};
use std::sync::atomic::{AtomicU64, Ordering};

use crate::error::{HarnessError, Result};

/// A multicast group address and port for one test's group.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct McastGroup {
    /// An address in 239.255.0.0/16 (organisation-local scope).
    pub address: Ipv4Addr,
    /// The group's UDP port.
    pub port: u16,
}

/// Picks a multicast group for `test`, checking that the port is free.
pub fn mcast_group(test: &str) -> Result<McastGroup> {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    for _ in 0..64 {
        let n = COUNTER.fetch_add(1, Ordering::Relaxed);
        let mut h = DefaultHasher::new();
        (test, std::process::id(), n).hash(&mut h);
        let v = h.finish();
        let x = 1 + (v % 254) as u8;
        let y = 1 + ((v >> 8) % 254) as u8;
        // Even ports in 20000..60000, away from the usual ephemeral range start.
        let port = 20_000 + (((v >> 16) % 20_000) as u16) * 2;
        if udp_port_free(port) {
            return Ok(McastGroup {
                address: Ipv4Addr::new(239, 255, x, y),
                port,
            });
        }
    }
    Err(HarnessError::Unexpected(
        "no free UDP port for a multicast group".into(),
    ))
}

fn udp_port_free(port: u16) -> bool {
    UdpSocket::bind(SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, port)).is_ok()
}

/// A TCP port on 127.0.0.1 that was free a moment ago (the kernel's choice).
pub fn free_tcp_port() -> Result<u16> {
    let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
        .map_err(|e| HarnessError::io("binding a TCP port", e))?;
    let addr = listener
        .local_addr()
        .map_err(|e| HarnessError::io("local_addr", e))?;
    Ok(addr.port())
}

/// A UDP port on 127.0.0.1 that was free a moment ago (the kernel's choice).
pub fn free_udp_port() -> Result<u16> {
    let socket = UdpSocket::bind((Ipv4Addr::LOCALHOST, 0))
        .map_err(|e| HarnessError::io("binding a UDP port", e))?;
    let addr = socket
        .local_addr()
        .map_err(|e| HarnessError::io("local_addr", e))?;
    Ok(addr.port())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn groups_are_multicast_and_distinct() {
        let a = mcast_group("t").unwrap();
        let b = mcast_group("t").unwrap();
        assert!(a.address.is_multicast() && b.address.is_multicast());
        assert_eq!(a.address.octets()[..2], [239, 255]);
        assert!(a != b, "two calls gave the same group {a:?}");
    }
}
