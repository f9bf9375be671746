//! `chorus-directory`: the membership server, as a system service.
//!
//! Reads its configuration (`--config`, default
//! `/etc/chorus/directory.toml`), serves until SIGTERM or SIGINT, re-reads
//! the file on SIGHUP, and tells systemd when it is ready (`NOTIFY_SOCKET`).
//! Exit codes follow sysexits: 0 ok, 1 runtime failure, 2 usage, 78
//! configuration error.
#![forbid(unsafe_code)]

use chorus_config::{describe_keys, DirectoryConfig, DEFAULT_DIRECTORY_CONFIG, EXIT_CONFIG};
use chorus_directory::Server;
use clap::Parser;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;

/// The chorus membership directory: daemons register with it, and it
/// decides the views of every group.
#[derive(Debug, Parser)]
#[command(name = "chorus-directory", version, about)]
struct Args {
    /// Configuration file.
    #[arg(long, value_name = "PATH", default_value = DEFAULT_DIRECTORY_CONFIG)]
    config: PathBuf,
    /// Validate the configuration file and exit (0 valid, 78 invalid).
    #[arg(long)]
    check: bool,
    /// Listen on this address instead of the configured one.
    #[arg(long, value_name = "ADDR")]
    listen: Option<SocketAddr>,
}

fn main() -> ExitCode {
    let args = Args::parse();
    let mut cfg = match DirectoryConfig::load(&args.config) {
        Ok(cfg) => cfg,
        Err(e) => {
            eprintln!("chorus-directory: {e}");
            return exit_code(EXIT_CONFIG);
        }
    };
    if args.check {
        println!("ok: {}", args.config.display());
        return ExitCode::SUCCESS;
    }
    if let Some(listen) = args.listen {
        cfg.listen = listen;
    }
    init_logging(&cfg.log_level);
    // The key files were read when the file was; read again now, so that
    // one removed or opened up since is a configuration error (78, which
    // systemd does not restart into) rather than a runtime failure.
    match cfg.trust.load(&args.config) {
        Err(e) => {
            log::error!("{e}");
            eprintln!("chorus-directory: {e}");
            return exit_code(EXIT_CONFIG);
        }
        Ok(Some(ring)) => log::info!("{}", describe_keys(&ring)),
        Ok(None) => log::warn!("{INSECURE_WARNING}"),
    }
    match serve(&args.config, &cfg) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            log::error!("{e}");
            eprintln!("chorus-directory: {e}");
            ExitCode::FAILURE
        }
    }
}

/// Logged at every start with `insecure = true`, so that running without a
/// key is never forgotten in a log nobody reads at install time only.
const INSECURE_WARNING: &str = "running without a cluster key (insecure = true): anyone who can \
reach the directory's port can read the membership and forge registrations, joins and views; \
make a key with `chorusctl keygen` and set key_file";

/// Logs at `RUST_LOG` if set, else at the configured level.
fn init_logging(level: &str) {
    let env = env_logger::Env::default().default_filter_or(level);
    env_logger::Builder::from_env(env)
        .format_timestamp_millis()
        .init();
}

/// Binds, installs the signal flags, reports readiness and serves.
fn serve(config: &Path, cfg: &DirectoryConfig) -> Result<(), String> {
    let server = Server::bind(cfg).map_err(|e| match &cfg.replication {
        None => format!("cannot listen on {}: {e}", cfg.listen),
        Some(_) => format!("cannot start (listen {}): {e}", cfg.listen),
    })?;
    let stop = Arc::new(AtomicBool::new(false));
    let reload = Arc::new(AtomicBool::new(false));
    for signal in [signal_hook::consts::SIGTERM, signal_hook::consts::SIGINT] {
        signal_hook::flag::register(signal, Arc::clone(&stop))
            .map_err(|e| format!("cannot install the signal handler: {e}"))?;
    }
    signal_hook::flag::register(signal_hook::consts::SIGHUP, Arc::clone(&reload))
        .map_err(|e| format!("cannot install the signal handler: {e}"))?;
    notify_ready();
    server
        .reload_on(config.to_path_buf(), reload)
        .run(stop)
        .map_err(|e| format!("the server failed: {e}"))
}

/// Tells systemd (or a test harness) that the directory serves, if
/// `NOTIFY_SOCKET` names a socket. Failures are logged, never fatal.
fn notify_ready() {
    let Some(target) = std::env::var_os("NOTIFY_SOCKET") else {
        return;
    };
    let result = std::os::unix::net::UnixDatagram::unbound().and_then(|socket| {
        let bytes = target.as_encoded_bytes();
        match bytes.strip_prefix(b"@") {
            Some(name) => send_abstract(&socket, name),
            None => socket.send_to(b"READY=1", &target).map(|_| ()),
        }
    });
    match result {
        Ok(()) => log::debug!("notified readiness to {}", target.to_string_lossy()),
        Err(e) => log::warn!("cannot notify {}: {e}", target.to_string_lossy()),
    }
}

#[cfg(target_os = "linux")]
fn send_abstract(socket: &std::os::unix::net::UnixDatagram, name: &[u8]) -> std::io::Result<()> {
    use std::os::linux::net::SocketAddrExt;
    let addr = std::os::unix::net::SocketAddr::from_abstract_name(name)?;
    socket.send_to_addr(b"READY=1", &addr).map(|_| ())
}

#[cfg(not(target_os = "linux"))]
fn send_abstract(_socket: &std::os::unix::net::UnixDatagram, _name: &[u8]) -> std::io::Result<()> {
    log::debug!("abstract NOTIFY_SOCKET addresses need Linux; not notifying");
    Ok(())
}

fn exit_code(code: i32) -> ExitCode {
    ExitCode::from(u8::try_from(code).unwrap_or(1))
}
