//! chorusd: the chorus per-host daemon.
//!
//! One IO thread ([`io::Daemon`]) owns the protocol core and every socket but
//! the sequencer's; a sequencer thread orders the groups this node sequences.
//! Local applications connect to a Unix socket.
#![forbid(unsafe_code)]

mod backoff;
mod dev;
mod directory_link;
mod io;
mod notify;
mod reload;
mod sequencer_thread;
mod session;
mod sockets;

use chorus_config::{describe_keys, DaemonConfig, DEFAULT_DAEMON_CONFIG, EXIT_CONFIG};
use chorus_proto::host::{Host, HostSettings};
use chorus_proto::wire::seal::SEAL_OVERHEAD_BYTES;
use chorus_proto::{Duration as CoreDuration, Incarnation};
use clap::Parser;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, Instant};

/// The chorus per-host daemon: reliable, totally ordered group
/// communication over IP multicast for the applications on this host.
#[derive(Debug, Parser)]
#[command(name = "chorusd", version, about, long_about = None)]
struct Args {
    /// Configuration file.
    #[arg(long, value_name = "PATH", default_value = DEFAULT_DAEMON_CONFIG)]
    config: PathBuf,
    /// Validate the configuration and exit (0 valid, 78 invalid).
    #[arg(long)]
    check: bool,
    /// Run a self-contained node for trying chorus on this machine: an
    /// in-process directory on loopback, a group `demo`, and a socket under
    /// $XDG_RUNTIME_DIR (or /tmp) that is printed.
    #[arg(long, conflicts_with = "check")]
    dev: bool,
}

fn main() -> ExitCode {
    let args = Args::parse();
    if args.dev {
        return dev::run();
    }
    let cfg = match DaemonConfig::load(&args.config) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("chorusd: {e}");
            return ExitCode::from(EXIT_CONFIG as u8);
        }
    };
    if args.check {
        println!("ok: {}", args.config.display());
        return ExitCode::SUCCESS;
    }
    init_logging(&cfg.log_level);
    // The key files were read when the file was; read again now, so that
    // one removed or opened up since is a configuration error (78, which
    // systemd does not restart into) rather than a runtime failure.
    let keys = match cfg.trust.load(&args.config) {
        Err(e) => {
            log::error!("{e}");
            eprintln!("chorusd: {e}");
            return ExitCode::from(EXIT_CONFIG as u8);
        }
        Ok(keys) => keys,
    };
    match &keys {
        Some(ring) => log::info!("{}", describe_keys(ring)),
        None => log::warn!("{INSECURE_WARNING}"),
    }
    let reloader = reload::Reloader::new(args.config.clone(), cfg.clone(), keys.as_ref());
    match serve(&cfg, None, Some(reloader)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            log::error!("{e}");
            eprintln!("chorusd: {e}");
            ExitCode::from(1)
        }
    }
}

/// Logged at every start with `insecure = true`, so that running without a
/// key is never forgotten in a log nobody reads at install time only.
const INSECURE_WARNING: &str = "running without a cluster key (insecure = true): anyone who can \
reach this host's data port or the groups' multicast addresses can read and forge messages and \
views; make a key with `chorusctl keygen` and set key_file";

/// Logging: RUST_LOG wins, else the configured level. Without RUST_LOG the
/// logger passes everything and the level is the global maximum, which
/// SIGHUP may change ([`reload::set_log_level`]).
pub fn init_logging(level: &str) {
    let mut b = env_logger::Builder::new();
    b.format_timestamp_millis();
    match std::env::var("RUST_LOG") {
        Ok(env) => {
            b.parse_filters(level);
            b.parse_filters(&env);
            let _ = b.try_init();
        }
        Err(_) => {
            b.filter_level(log::LevelFilter::Trace);
            if b.try_init().is_ok() && !reload::set_log_level(level) {
                log::set_max_level(log::LevelFilter::Info);
            }
        }
    }
}

/// How long a request that needs the directory (join, leave, listing the
/// groups) waits for its answer, or for this node to be registered, before
/// it fails as unavailable (chorusctl exits 69). Longer than the grace
/// period in which a new directory holds a fresh daemon's registration
/// (one lease, 1.5 s by default) plus the reconnect delay. The host makes
/// it two leases of a directory whose lease is longer than 2.5 s.
pub const DIRECTORY_WAIT: Duration = Duration::from_secs(5);

/// A fresh incarnation for this life: time since the epoch mixed with the pid.
fn incarnation() -> Incarnation {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64);
    Incarnation(nanos ^ (u64::from(std::process::id()) << 48))
}

/// Binds the app socket, refusing to steal one a live chorusd serves.
fn bind_app_socket(path: &Path, mode: u32) -> Result<std::os::unix::net::UnixListener, String> {
    use std::os::unix::fs::PermissionsExt;
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)
            .map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
    }
    if path.exists() {
        if std::os::unix::net::UnixStream::connect(path).is_ok() {
            return Err(format!("another chorusd is serving {}", path.display()));
        }
        std::fs::remove_file(path)
            .map_err(|e| format!("cannot remove stale {}: {e}", path.display()))?;
    }
    let l = std::os::unix::net::UnixListener::bind(path)
        .map_err(|e| format!("cannot listen on {}: {e}", path.display()))?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))
        .map_err(|e| format!("cannot set mode {mode:o} on {}: {e}", path.display()))?;
    Ok(l)
}

/// Runs the daemon until SIGTERM/SIGINT. `on_ready` (dev mode) runs once
/// the daemon serves: registered with the directory, its socket bound.
/// `reloader` handles SIGHUP (none in dev mode: there is no file).
pub fn serve(
    cfg: &DaemonConfig,
    on_ready: Option<Box<dyn FnOnce()>>,
    reloader: Option<reload::Reloader>,
) -> Result<(), String> {
    let epoch = Instant::now();
    let data = sockets::sending_socket(cfg.interface, cfg.data_port).map_err(|e| {
        format!(
            "cannot bind the data socket {}:{}: {e}",
            cfg.interface, cfg.data_port
        )
    })?;
    let order = sockets::sending_socket(cfg.interface, 0)
        .map_err(|e| format!("cannot bind the sequencer socket on {}: {e}", cfg.interface))?;
    let port_of = |s: &std::net::UdpSocket| match s.local_addr() {
        Ok(SocketAddr::V4(a)) => Ok(a.port()),
        other => Err(format!("unexpected local address {other:?}")),
    };
    let (data_port, order_port) = (port_of(&data)?, port_of(&order)?);
    let keys = cfg
        .trust
        .load(Path::new("chorusd.toml"))
        .map_err(|e| e.to_string())?;
    let listener = bind_app_socket(&cfg.socket, cfg.socket_mode)?;
    let t = &cfg.tuning;
    let mut host = Host::new(HostSettings {
        node_name: cfg.node.clone(),
        incarnation: incarnation(),
        ip: cfg.interface,
        data_port,
        order_port,
        // Sealing adds its header and tag to every datagram: the protocol
        // fills what is left, so a sealed datagram stays within the limit.
        max_datagram_bytes: t.max_datagram_bytes
            - if keys.is_some() {
                SEAL_OVERHEAD_BYTES
            } else {
                0
            },
        max_message_bytes: t.max_message_bytes,
        send_window_messages: t.send_window_messages,
        receive_window_messages: t.receive_window_messages,
        ack_interval: CoreDuration::from_millis(t.ack_interval_ms),
        retransmit: CoreDuration::from_millis(t.retransmit_ms),
        // What the group sockets can buffer: the kernel counts about twice
        // a datagram's payload against the buffer, so half of it.
        flow_budget_bytes: sockets::SOCKET_BUFFER_BYTES / 2,
        directory_label: cfg
            .directory
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join(","),
        version: env!("CARGO_PKG_VERSION").to_owned(),
    });
    host.set_directory_wait(Some(CoreDuration::from_millis(
        DIRECTORY_WAIT.as_millis() as u64
    )));
    log::info!(
        "chorusd {} node {} on {} (data port {data_port}, order port {order_port}), socket {}",
        env!("CARGO_PKG_VERSION"),
        cfg.node,
        cfg.interface,
        cfg.socket.display()
    );
    let edge = io::EdgeSettings {
        interface: cfg.interface,
        session_queue_bytes: t.session_queue_bytes,
    };
    let mut daemon = io::Daemon::new(
        host,
        epoch,
        edge,
        listener,
        data,
        order,
        cfg.directory.clone(),
        keys,
    )
    .map_err(|e| format!("cannot start: {e}"))?;
    if let Some(f) = on_ready {
        daemon.on_ready(f);
    }
    if let Some(mut r) = reloader {
        daemon.on_reload(Box::new(move || {
            let _ = r.reload();
            r.take_keys()
        }));
    }
    let result = daemon.run().map_err(|e| format!("IO loop failed: {e}"));
    let _ = std::fs::remove_file(&cfg.socket);
    log::info!("stopped");
    result
}
