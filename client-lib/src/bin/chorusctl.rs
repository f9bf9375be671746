//! chorusctl: the command-line client of the local chorusd.
//!
//! Exit codes follow sysexits: 0 ok, 1 the daemon refused or the session
//! failed, 2 usage, 69 the daemon or its directory is unreachable: the
//! daemon's socket cannot be reached, the daemon refused a request as
//! `Unavailable` (its directory did not answer, or it is not registered
//! with one), or `status` found it not connected to a directory (it cannot
//! serve joins yet: a script may wait for `status` to exit 0). `keygen`,
//! which talks to no daemon, exits 73 when it cannot create the key file
//! (it exists, without `--force`) and 71 when the random source fails.
#![forbid(unsafe_code)]

#[path = "chorusctl/keygen.rs"]
mod keygen;
#[path = "chorusctl/output.rs"]
mod output;

use std::ffi::OsString;
use std::io::{self, BufRead, Read};
use std::os::unix::ffi::OsStrExt;
use std::path::PathBuf;
use std::process::ExitCode;

use chorus::{Client, Error, ErrorCode, Event, Order};
use chorus_proto::wire::app::APP_PAYLOAD_MAX_BYTES;
use clap::{Parser, Subcommand, ValueEnum};

use output::{Out, Printed};

const EXIT_FAILURE: u8 = 1;
const EXIT_UNAVAILABLE: u8 = 69;

/// Longest line `send` reads from standard input: the largest message any
/// daemon accepts (16 MiB). A longer line is an error, found without
/// reading more of it than that.
const LINE_MAX_BYTES: usize = APP_PAYLOAD_MAX_BYTES;

#[derive(Debug, Parser)]
#[command(name = "chorusctl", version, about = "Talk to the local chorus daemon")]
struct Cli {
    /// The daemon's Unix socket [default: $CHORUS_SOCKET, else /run/chorus/chorusd.sock]
    #[arg(long, global = true, value_name = "PATH")]
    socket: Option<PathBuf>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Show the daemon's state
    Status {
        /// One JSON object
        #[arg(long)]
        json: bool,
    },
    /// Show the daemon's counters (datagrams, messages, NAKs, retransmissions, drops by reason) and each group's send queue and flow window
    Stats {
        /// One JSON object
        #[arg(long)]
        json: bool,
    },
    /// List the groups the daemon knows
    Groups {
        /// One JSON object per group
        #[arg(long)]
        json: bool,
    },
    /// Show the current view of a group
    Members {
        group: String,
        /// One JSON object
        #[arg(long)]
        json: bool,
    },
    /// Send each MESSAGE (or, with none, each line of standard input, up to 16 MiB) to a group
    Send {
        group: String,
        /// Delivery service
        #[arg(long, value_enum, default_value_t = OrderArg::Total)]
        order: OrderArg,
        /// Member name to join as [default: send-PID]
        #[arg(long)]
        name: Option<String>,
        message: Vec<OsString>,
    },
    /// Join a group and print every view and message delivered
    Listen {
        group: String,
        /// One JSON object per line
        #[arg(long)]
        json: bool,
        /// Exit after N messages (views do not count)
        #[arg(long, value_name = "N")]
        count: Option<u64>,
        /// Member name to join as [default: listen-PID]
        #[arg(long)]
        name: Option<String>,
    },
    /// Make a new cluster key in PATH (mode 0600) for key_file in chorusd.toml and directory.toml
    #[command(
        long_about = "Make a new cluster key: 32 bytes from the system's random source, \
written to PATH as one line of text, readable and writable by its owner only (mode 0600). \
Every chorusd and every directory replica of a cluster reads the same key file (key_file in \
chorusd.toml and directory.toml); copy it to each, owned by the user they run as.\n\n\
Prints the key's id (which names the key without revealing it) and the next steps; the key \
itself is never printed. An existing PATH is left alone (exit 73) unless --force is given. \
Talks to no daemon."
    )]
    Keygen {
        /// Where to write the key, e.g. /etc/chorus/cluster.key
        path: PathBuf,
        /// Replace PATH if it exists (a new file is renamed over it: the path never holds a partial key)
        #[arg(long)]
        force: bool,
    },
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum OrderArg {
    Fifo,
    Total,
    Safe,
}

impl From<OrderArg> for Order {
    fn from(o: OrderArg) -> Order {
        match o {
            OrderArg::Fifo => Order::Fifo,
            OrderArg::Total => Order::Total,
            OrderArg::Safe => Order::Safe,
        }
    }
}

/// Why chorusctl stops early.
#[derive(Debug)]
enum Failure {
    Client(Error),
    /// Reading standard input failed.
    Stdin(io::Error),
    /// Writing standard output failed; a closed pipe (e.g. `| head`) ends
    /// chorusctl quietly.
    Stdout(io::Error),
    /// `listen`'s member was separated from its group for good.
    Separated(String),
    /// `status` found the daemon not connected to its directory (named).
    NotConnected(String),
}

impl From<Error> for Failure {
    fn from(e: Error) -> Self {
        Failure::Client(e)
    }
}

impl From<Printed> for Failure {
    fn from(p: Printed) -> Self {
        Failure::Stdout(p.0)
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    if let Command::Keygen { path, force } = &cli.command {
        return match keygen::keygen(path, *force) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("chorusctl: {}", e.message);
                ExitCode::from(e.code)
            }
        };
    }
    let socket = cli.socket.unwrap_or_else(chorus::default_socket_path);
    let mut out = Out::stdout();
    let result = Client::connect(&socket)
        .map_err(Failure::from)
        .and_then(|mut client| run(&mut client, cli.command, &mut out));
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(Failure::Stdout(e)) if e.kind() == io::ErrorKind::BrokenPipe => ExitCode::SUCCESS,
        Err(Failure::Stdout(e)) => {
            eprintln!("chorusctl: writing standard output: {e}");
            ExitCode::from(EXIT_FAILURE)
        }
        Err(Failure::Client(e @ Error::Connect { .. })) => {
            eprintln!("chorusctl: {e}");
            eprintln!(
                "hint: is chorusd running? Point chorusctl at its socket with --socket or {}; \
                 for a trial on this machine, start `chorusd --dev` and use the socket it prints",
                chorus::SOCKET_ENV
            );
            ExitCode::from(EXIT_UNAVAILABLE)
        }
        Err(Failure::Client(
            e @ Error::Daemon {
                code: ErrorCode::Unavailable,
                ..
            },
        )) => {
            eprintln!("chorusctl: {e}");
            ExitCode::from(EXIT_UNAVAILABLE)
        }
        Err(Failure::Client(e)) => {
            eprintln!("chorusctl: {e}");
            ExitCode::from(EXIT_FAILURE)
        }
        Err(Failure::NotConnected(directory)) => {
            eprintln!(
                "chorusctl: chorusd is not connected to its directory ({directory}) yet: \
                 it cannot serve joins until it is"
            );
            ExitCode::from(EXIT_UNAVAILABLE)
        }
        Err(Failure::Stdin(e)) => {
            eprintln!("chorusctl: reading standard input: {e}");
            ExitCode::from(EXIT_FAILURE)
        }
        Err(Failure::Separated(why)) => {
            eprintln!("chorusctl: {why}");
            ExitCode::from(EXIT_FAILURE)
        }
    }
}

fn run(client: &mut Client, command: Command, out: &mut Out) -> Result<(), Failure> {
    match command {
        Command::Status { json } => {
            let status = client.status()?;
            out.status(&status, json)?;
            if !status.connected {
                return Err(Failure::NotConnected(status.directory));
            }
        }
        Command::Stats { json } => out.stats(&client.stats()?, json)?,
        Command::Groups { json } => out.groups(&client.groups()?, json)?,
        Command::Members { group, json } => out.members(&client.members(&group)?, json)?,
        Command::Send {
            group,
            order,
            name,
            message,
        } => {
            let name = name.unwrap_or_else(|| format!("send-{}", std::process::id()));
            send(client, &group, &name, order.into(), &message)?;
        }
        Command::Listen {
            group,
            json,
            count,
            name,
        } => {
            let name = name.unwrap_or_else(|| format!("listen-{}", std::process::id()));
            listen(client, &group, &name, json, count, out)?;
        }
        // Handled in main: it needs no daemon.
        Command::Keygen { .. } => {}
    }
    Ok(())
}

/// Joins, sends every message, waits until the daemon accepted them all, leaves.
fn send(
    client: &mut Client,
    group: &str,
    name: &str,
    order: Order,
    messages: &[OsString],
) -> Result<(), Failure> {
    // Our own messages come back to us: nobody reads them here.
    client.discard_events(true);
    client.join(group, name)?;
    if messages.is_empty() {
        let stdin = io::stdin();
        let mut input = stdin.lock();
        let mut line = Vec::new();
        for number in 1u64.. {
            line.clear();
            // A whole line and its newline, or one byte too many.
            let read = input
                .by_ref()
                .take(LINE_MAX_BYTES as u64 + 1)
                .read_until(b'\n', &mut line)
                .map_err(Failure::Stdin)?;
            if read == 0 {
                break;
            }
            if line.last() == Some(&b'\n') {
                line.pop();
            } else if line.len() > LINE_MAX_BYTES {
                return Err(Failure::Stdin(io::Error::new(
                    io::ErrorKind::InvalidData,
                    format!(
                        "line {number} is longer than {LINE_MAX_BYTES} bytes, the largest message"
                    ),
                )));
            }
            client.send(group, order, &line)?;
        }
    } else {
        for m in messages {
            client.send(group, order, m.as_bytes())?;
        }
    }
    client.flush()?;
    leave_when_done(client, group)
}

/// Leaves `group` once the command's work is done (every message accepted,
/// or printed). A directory that does not answer the leave does not undo
/// that work: it is a warning, and the exit status stays 0 (the member is
/// gone from this node; the daemon tells the directory once it answers).
fn leave_when_done(client: &mut Client, group: &str) -> Result<(), Failure> {
    match client.leave(group) {
        Err(Error::Daemon {
            code: ErrorCode::Unavailable,
            message,
        }) => {
            eprintln!("chorusctl: warning: leaving {group}: {message}");
            Ok(())
        }
        other => Ok(other?),
    }
}

/// Joins and prints events until `count` messages were printed (or forever).
fn listen(
    client: &mut Client,
    group: &str,
    name: &str,
    json: bool,
    count: Option<u64>,
    out: &mut Out,
) -> Result<(), Failure> {
    client.join(group, name)?;
    // Messages still to print; None: no limit.
    let mut left = count;
    while left != Some(0) {
        let event = client.recv()?;
        if matches!(event, Event::Message(_)) {
            left = left.map(|n| n - 1);
        }
        if let Err(e) = out.event(&event, json) {
            // Nobody reads any more: leave politely, then stop.
            let _ = client.leave(group);
            return Err(e.into());
        }
        if let Event::Separated(s) = &event {
            if !s.rejoining {
                // The membership is over: nothing more will come.
                return Err(Failure::Separated(format!(
                    "separated from group {} after view {}: {}",
                    s.group, s.view, s.reason
                )));
            }
        }
    }
    leave_when_done(client, group)
}
