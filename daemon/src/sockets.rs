//! Every socket option chorusd sets, in one place.
//!
//! Multicast leaves through the configured interface with TTL 1 and loops
//! back to other sockets on this host (daemons sharing a machine, and our own
//! sequencer's ORDER reaching our IO thread).

use socket2::{Domain, Protocol, SockAddr, Socket, Type};
use std::io;
use std::net::{Ipv4Addr, SocketAddrV4, UdpSocket};

/// Kernel buffer size asked for: bursts of small datagrams must not overflow.
pub const SOCKET_BUFFER_BYTES: usize = 4 << 20;

fn udp() -> io::Result<Socket> {
    let s = Socket::new(Domain::IPV4, Type::DGRAM, Some(Protocol::UDP))?;
    s.set_nonblocking(true)?;
    // Best effort: the kernel caps these at net.core.{r,w}mem_max.
    let _ = s.set_recv_buffer_size(SOCKET_BUFFER_BYTES);
    let _ = s.set_send_buffer_size(SOCKET_BUFFER_BYTES);
    Ok(s)
}

/// A unicast socket on `ip:port` (port 0: any) that also sends multicast out
/// of the interface `ip`.
pub fn sending_socket(ip: Ipv4Addr, port: u16) -> io::Result<UdpSocket> {
    let s = udp()?;
    s.bind(&SockAddr::from(SocketAddrV4::new(ip, port)))?;
    s.set_multicast_if_v4(&ip)?;
    s.set_multicast_ttl_v4(1)?;
    s.set_multicast_loop_v4(true)?;
    Ok(s.into())
}

/// A socket that receives the multicast group `group` on interface `iface`.
/// Several daemons on one host each bind the group's port (SO_REUSEADDR);
/// binding the group address keeps other groups' traffic out.
pub fn multicast_socket(group: SocketAddrV4, iface: Ipv4Addr) -> io::Result<UdpSocket> {
    let s = udp()?;
    s.set_reuse_address(true)?;
    s.bind(&SockAddr::from(group))?;
    s.join_multicast_v4(group.ip(), &iface)?;
    Ok(s.into())
}
