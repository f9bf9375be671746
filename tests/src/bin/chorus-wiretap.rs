//! chorus-wiretap: a test-only attacker on the namespace network.
//!
//! ```text
//! chorus-wiretap capture OUT STOP_FILE MAX_SECONDS   # in the bridge's namespace
//! chorus-wiretap replay CAPTURE IFACE_ADDR TIMES     # in an attacker host
//! chorus-wiretap probe-directory ADDR NODE           # in an attacker host
//! ```
//! `capture` records every UDP datagram that enters the bridge from a host
//! (a packet socket on every port; what the hosts send, once each) until
//! STOP_FILE exists or MAX_SECONDS passed, then prints `captured N`.
//! `replay` sends every captured datagram TIMES more to where it went, and
//! each of its [`alterations`], from IFACE_ADDR, then prints
//! `replayed N altered M`.
//! `probe-directory` connects to the directory at ADDR, says Hello as node
//! NODE in clear (as a version-4 daemon without the key would) and asks to
//! join, then prints `received N HEX` with what came back within a second.
#![forbid(unsafe_code)]

use std::io::BufWriter;
use std::net::{Ipv4Addr, SocketAddrV4};
use std::path::Path;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use chorus_tests::wiretap::{alterations, read_capture, udp_in_frame, write_record};
use nix::sys::socket::{
    recvfrom, setsockopt, socket, sockopt, AddressFamily, LinkAddr, SockFlag, SockProtocol,
    SockType,
};
use socket2::{Domain, Protocol, Socket, Type};

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let result = match args.first().map(String::as_str) {
        Some("capture") if args.len() == 4 => capture(&args[1..]),
        Some("replay") if args.len() == 4 => replay(&args[1..]),
        Some("probe-directory") if args.len() == 3 => probe_directory(&args[1..]),
        _ => Err("usage: chorus-wiretap capture OUT STOP_FILE MAX_SECONDS | replay CAPTURE IFACE_ADDR TIMES".into()),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("chorus-wiretap: {e}");
            ExitCode::from(1)
        }
    }
}

fn parse<T: std::str::FromStr>(what: &str, text: &str) -> Result<T, String> {
    text.parse().map_err(|_| format!("bad {what}: {text:?}"))
}

/// Linux's PACKET_OUTGOING: a frame the interface sent, seen again.
const PACKET_OUTGOING: u8 = 4;

fn capture(args: &[String]) -> Result<(), String> {
    let out = Path::new(&args[0]);
    let stop = Path::new(&args[1]);
    let max = Duration::from_secs(parse("MAX_SECONDS", &args[2])?);
    let fd = socket(
        AddressFamily::Packet,
        SockType::Raw,
        SockFlag::empty(),
        SockProtocol::EthAll,
    )
    .map_err(|e| format!("packet socket: {e}"))?;
    setsockopt(
        &fd,
        sockopt::ReceiveTimeout,
        &nix::sys::time::TimeVal::new(0, 100_000),
    )
    .map_err(|e| format!("timeout: {e}"))?;
    // The bridge itself also hands multicast up to its own interface: take
    // each frame where it entered the bridge, from a host's port.
    let bridge = nix::net::if_::if_nametoindex("br0").map_err(|e| format!("br0: {e}"))?;
    let file = std::fs::File::create(out).map_err(|e| format!("{}: {e}", out.display()))?;
    let mut w = BufWriter::new(file);
    // Readiness: the harness waits for this file before it sends.
    std::fs::write(out.with_extension("ready"), b"").map_err(|e| format!("ready: {e}"))?;
    let started = Instant::now();
    let mut buf = vec![0u8; 65536];
    let mut n = 0u64;
    while !stop.exists() && started.elapsed() < max {
        use std::os::fd::AsRawFd;
        match recvfrom::<LinkAddr>(fd.as_raw_fd(), &mut buf) {
            Ok((len, Some(addr))) => {
                if addr.pkttype() == PACKET_OUTGOING || addr.ifindex() == bridge as usize {
                    continue;
                }
                if let Some(c) = udp_in_frame(&buf[..len]) {
                    write_record(&mut w, &c).map_err(|e| format!("write: {e}"))?;
                    n += 1;
                }
            }
            Ok((_, None)) => {}
            Err(nix::errno::Errno::EAGAIN | nix::errno::Errno::EINTR) => {}
            Err(e) => return Err(format!("recv: {e}")),
        }
    }
    std::io::Write::flush(&mut w).map_err(|e| format!("write: {e}"))?;
    println!("captured {n}");
    Ok(())
}

fn replay(args: &[String]) -> Result<(), String> {
    let captured = read_capture(Path::new(&args[0])).map_err(|e| format!("{}: {e}", args[0]))?;
    let iface: Ipv4Addr = parse("IFACE_ADDR", &args[1])?;
    let times: usize = parse("TIMES", &args[2])?;
    let s = Socket::new(Domain::IPV4, Type::DGRAM, Some(Protocol::UDP))
        .map_err(|e| format!("socket: {e}"))?;
    s.bind(&SocketAddrV4::new(iface, 0).into())
        .map_err(|e| format!("bind: {e}"))?;
    s.set_multicast_if_v4(&iface)
        .map_err(|e| format!("multicast if: {e}"))?;
    s.set_multicast_ttl_v4(1).map_err(|e| format!("ttl: {e}"))?;
    let (mut replayed, mut altered) = (0u64, 0u64);
    let send = |bytes: &[u8], to: SocketAddrV4| {
        // Paced so that the receivers' buffers hold the genuine traffic too.
        std::thread::sleep(Duration::from_micros(50));
        s.send_to(bytes, &to.into()).is_ok()
    };
    for c in &captured {
        for _ in 0..times {
            replayed += u64::from(send(&c.payload, c.dst));
        }
        for a in alterations(&c.payload) {
            altered += u64::from(send(&a, c.dst));
        }
    }
    println!("replayed {replayed} altered {altered}");
    Ok(())
}

fn probe_directory(args: &[String]) -> Result<(), String> {
    use chorus_proto::wire::directory::ToDirectory;
    use chorus_proto::wire::frame::write_frame;
    use chorus_proto::{Epoch, Incarnation};
    use std::io::{Read, Write};
    let addr: std::net::SocketAddr = parse("ADDR", &args[0])?;
    let mut s = std::net::TcpStream::connect_timeout(&addr, Duration::from_secs(2))
        .map_err(|e| format!("connect {addr}: {e}"))?;
    let ip = match s.local_addr() {
        Ok(std::net::SocketAddr::V4(a)) => *a.ip(),
        _ => Ipv4Addr::LOCALHOST,
    };
    let mut out = Vec::new();
    let hello = ToDirectory::Hello {
        name: args[1].clone(),
        incarnation: Incarnation(1),
        ip,
        data_port: 7401,
        order_port: 7402,
        previous: None,
        epoch: Epoch(0),
    };
    write_frame(&mut out, |b| hello.encode(b));
    // Whatever the directory makes of it, the bytes go out.
    let _ = s.write_all(&out);
    s.set_read_timeout(Some(Duration::from_millis(200)))
        .map_err(|e| format!("timeout: {e}"))?;
    let started = Instant::now();
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    while started.elapsed() < Duration::from_secs(1) {
        match s.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => got.extend_from_slice(&buf[..n]),
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) => {}
            Err(_) => break,
        }
    }
    let hex: String = got.iter().map(|b| format!("{b:02x}")).collect();
    println!("received {} {hex}", got.len());
    Ok(())
}
