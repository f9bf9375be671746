//! `chorusd --dev`: a whole chorus on this machine with nothing to configure.
//!
//! It runs keyed all the same: a key drawn at start and held in memory only
//! ([`Trust::Ephemeral`]), shared by the daemon and its in-process
//! directory. Nothing outside the process holds it, so no other process on
//! the machine can read or inject the demo's traffic, and there is no key
//! file to make.

use chorus_config::{DaemonConfig, DirectoryConfig, DynamicConfig, GroupConfig, Trust};
use chorus_proto::wire::seal::KEY_BYTES;
use ring::rand::{SecureRandom, SystemRandom};
use std::io::Write;
use std::net::Ipv4Addr;
use std::path::PathBuf;
use std::process::ExitCode;

/// Where the demo group lives (administratively scoped, loopback only).
const DEMO_ADDRESS: Ipv4Addr = Ipv4Addr::new(239, 255, 67, 1);
const DEMO_PORT: u16 = 7410;

fn socket_path() -> PathBuf {
    match std::env::var_os("XDG_RUNTIME_DIR") {
        Some(d) if !d.is_empty() => PathBuf::from(d).join("chorusd-dev.sock"),
        _ => PathBuf::from(format!("/tmp/chorusd-dev-{}.sock", nix::unistd::getuid())),
    }
}

pub fn run() -> ExitCode {
    crate::init_logging("info");
    let mut secret = [0u8; KEY_BYTES];
    if SystemRandom::new().fill(&mut secret).is_err() {
        eprintln!("chorusd --dev: the system's random source failed; cannot draw a cluster key");
        return ExitCode::from(1);
    }
    let dir_cfg = DirectoryConfig {
        listen: "127.0.0.1:0".parse().unwrap_or_else(|_| unreachable!()),
        // Each dev instance is its own cluster: two on one machine never mix.
        cluster: format!("dev-{}", std::process::id()),
        groups: vec![GroupConfig {
            name: "demo".into(),
            address: DEMO_ADDRESS,
            port: DEMO_PORT,
            max_members: None,
            max_message_bytes: None,
            allow_users: None,
            allow_groups: None,
        }],
        dynamic: "239.255.68.0/24".parse().ok().map(|pool| DynamicConfig {
            address_pool: pool,
            port: DEMO_PORT + 10,
        }),
        trust: Trust::Ephemeral(secret),
        ..DirectoryConfig::default()
    };
    let server =
        match chorus_directory::Server::bind(&dir_cfg).and_then(|s| s.without_grace().spawn()) {
            Ok(s) => s,
            Err(e) => {
                eprintln!("chorusd --dev: cannot start the in-process directory: {e}");
                return ExitCode::from(1);
            }
        };
    let dir_addr = server.local_addr();
    let cfg = DaemonConfig {
        directory: vec![dir_addr],
        interface: Ipv4Addr::LOCALHOST,
        data_port: 0,
        socket: socket_path(),
        socket_mode: 0o600,
        trust: Trust::Ephemeral(secret),
        ..DaemonConfig::default()
    };
    let node = cfg.node.clone();
    let path = cfg.socket.clone();
    let announce = move || {
        let mut out = std::io::stdout().lock();
        let _ = writeln!(
            out,
            "chorusd --dev: node {node}, directory {dir_addr}, group demo at {DEMO_ADDRESS}:{DEMO_PORT} (loopback only)"
        );
        let _ = writeln!(out, "socket: {}", path.display());
        let _ = writeln!(out, "try, in another terminal:");
        let _ = writeln!(out, "  export CHORUS_SOCKET={}", path.display());
        let _ = writeln!(
            out,
            "  chorusctl listen demo        # and in a third: chorusctl send demo hello"
        );
        let _ = out.flush();
    };
    let result = crate::serve(&cfg, Some(Box::new(announce)), None);
    let _ = server.stop();
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("chorusd --dev: {e}");
            ExitCode::from(1)
        }
    }
}
