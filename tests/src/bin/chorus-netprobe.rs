//! chorus-netprobe: a test-only multicast sender/receiver.
//!
//! Lets the harness prove, without chorus itself, that its network namespaces
//! carry multicast between hosts and that its nftables loss really drops.
//!
//! ```text
//! chorus-netprobe recv GROUP PORT IFACE MAX IDLE_MS   # prints "received N"
//! chorus-netprobe send GROUP PORT IFACE COUNT         # prints "sent N"
//! ```
//! `recv` joins GROUP on IFACE, sends `READY=1` to `$NOTIFY_SOCKET` once
//! joined, and counts datagrams until MAX arrived or none came for IDLE_MS.
//! `send` sets IP_MULTICAST_IF to IFACE (or, with IFACE `-`, leaves it to the
//! routing table) and sends COUNT datagrams with TTL 1.
#![forbid(unsafe_code)]

use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};
use std::os::unix::net::UnixDatagram;
use std::process::ExitCode;
use std::time::Duration;

use socket2::{Domain, Protocol, Socket, Type};

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let result = match args.first().map(String::as_str) {
        Some("recv") if args.len() == 6 => recv(&args[1..]),
        Some("send") if args.len() == 5 => send(&args[1..]),
        _ => Err("usage: chorus-netprobe recv GROUP PORT IFACE MAX IDLE_MS | send GROUP PORT IFACE COUNT".into()),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("chorus-netprobe: {e}");
            ExitCode::from(1)
        }
    }
}

fn parse<T: std::str::FromStr>(what: &str, text: &str) -> Result<T, String> {
    text.parse().map_err(|_| format!("bad {what}: {text:?}"))
}

fn udp_socket() -> Result<Socket, String> {
    Socket::new(Domain::IPV4, Type::DGRAM, Some(Protocol::UDP)).map_err(|e| format!("socket: {e}"))
}

fn recv(args: &[String]) -> Result<(), String> {
    let group: Ipv4Addr = parse("group", &args[0])?;
    let port: u16 = parse("port", &args[1])?;
    let iface: Ipv4Addr = parse("interface", &args[2])?;
    let max: usize = parse("max", &args[3])?;
    let idle_ms: u64 = parse("idle_ms", &args[4])?;
    let socket = udp_socket()?;
    socket
        .set_reuse_address(true)
        .map_err(|e| format!("SO_REUSEADDR: {e}"))?;
    // Room for a whole burst, so that only nftables loses datagrams.
    socket
        .set_recv_buffer_size(1 << 20)
        .map_err(|e| format!("SO_RCVBUF: {e}"))?;
    // Bound to the group address, so only this group's datagrams arrive.
    socket
        .bind(&SocketAddr::V4(SocketAddrV4::new(group, port)).into())
        .map_err(|e| format!("bind {group}:{port}: {e}"))?;
    socket
        .join_multicast_v4(&group, &iface)
        .map_err(|e| format!("join {group} on {iface}: {e}"))?;
    socket
        .set_read_timeout(Some(Duration::from_millis(idle_ms)))
        .map_err(|e| format!("timeout: {e}"))?;
    if let Some(path) = std::env::var_os("NOTIFY_SOCKET") {
        let notify = UnixDatagram::unbound().map_err(|e| format!("notify socket: {e}"))?;
        notify
            .send_to(b"READY=1\n", path)
            .map_err(|e| format!("notify: {e}"))?;
    }
    let socket: std::net::UdpSocket = socket.into();
    let mut buf = [0u8; 2048];
    let mut received = 0;
    while received < max {
        match socket.recv(&mut buf) {
            Ok(_) => received += 1,
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) =>
            {
                break
            }
            Err(e) => return Err(format!("recv: {e}")),
        }
    }
    println!("received {received}");
    Ok(())
}

fn send(args: &[String]) -> Result<(), String> {
    let group: Ipv4Addr = parse("group", &args[0])?;
    let port: u16 = parse("port", &args[1])?;
    let count: usize = parse("count", &args[3])?;
    let socket = udp_socket()?;
    if args[2] != "-" {
        let iface: Ipv4Addr = parse("interface", &args[2])?;
        socket
            .set_multicast_if_v4(&iface)
            .map_err(|e| format!("IP_MULTICAST_IF {iface}: {e}"))?;
    }
    socket
        .set_multicast_ttl_v4(1)
        .map_err(|e| format!("ttl: {e}"))?;
    let to = SocketAddr::V4(SocketAddrV4::new(group, port)).into();
    for i in 0..count {
        socket
            .send_to(format!("probe-{i}").as_bytes(), &to)
            .map_err(|e| format!("send to {group}:{port}: {e}"))?;
    }
    println!("sent {count}");
    Ok(())
}
