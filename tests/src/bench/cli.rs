//! The command line of `chorus-bench`, and the runs it asks for.

use chorus::Order;
use clap::{Parser, ValueEnum};

/// The senders of the course project's experiment grid (`--seed-table`).
pub const SEED_TABLE_SENDERS: [u32; 3] = [2, 4, 8];
/// The messages per sender of the grid.
pub const SEED_TABLE_MESSAGES: [u32; 3] = [100, 1_000, 10_000];
/// Most messages one run may carry (P×M): every member keeps the sequence
/// it delivered, 8 bytes a message.
pub const MAX_MESSAGES_PER_RUN: u64 = 10_000_000;

/// Starts a chorus cluster, drives it with senders and measures delivery.
#[derive(Debug, Clone, Parser)]
#[command(
    name = "chorus-bench",
    version,
    about = "Cluster benchmark: a directory and N daemons, P senders of M messages of S bytes",
    long_about = "Cluster benchmark: starts a directory and N daemons (on 127.0.0.1, or one per \
network namespace with --netns), one listening member per daemon and P sending members spread \
round-robin over the daemons, and sends M messages of S bytes from every sender.\n\n\
For every run it prints, per listening member: messages delivered, messages/s and MB/s \
(payload bytes, 1 MB = 10^6 bytes) from the first send to that member's last delivery, and \
latency p50/p99/p999 from send to delivery; then whether every member delivered the same \
sequence and exactly P×M messages, each once; then, per daemon, what it did during the run \
(from its counters, as `chorusctl stats` shows them): retransmissions, NAKs sent and received, \
tail probes, flow-window decreases, the kernel's UDP receive-buffer drops (RcvbufErrors; on \
loopback one value for the whole host) and its CPU seconds. Exits 1 if a check fails or a run \
times out.\n\n\
chorusd and chorus-directory are taken from the directory of this executable, or from \
$CHORUS_BIN_DIR: build them first (cargo build --release --workspace)."
)]
pub struct Options {
    /// Daemons (one listening member each)
    #[arg(long, value_name = "N", default_value_t = 3,
          value_parser = clap::value_parser!(u32).range(1..=64))]
    pub nodes: u32,
    /// Sending members, spread round-robin over the daemons
    #[arg(long, value_name = "P", default_value_t = 2, conflicts_with = "seed_table",
          value_parser = clap::value_parser!(u32).range(1..=1024))]
    pub senders: u32,
    /// Messages per sender
    #[arg(long, value_name = "M", default_value_t = 1000, conflicts_with = "seed_table",
          value_parser = clap::value_parser!(u32).range(1..))]
    pub messages: u32,
    /// Payload bytes per message: at least 16 (sender, number and send time),
    /// at most what one datagram carries (the daemon refuses larger)
    #[arg(long, value_name = "S", default_value_t = 64,
          value_parser = clap::value_parser!(u32).range(16..))]
    pub size: u32,
    /// Delivery service. For total and safe every member must deliver the same
    /// sequence; for fifo, the same set with the same order per sender
    #[arg(long, value_enum, default_value_t = OrderArg::Total)]
    pub order: OrderArg,
    /// Messages per second per sender [default: as fast as the daemon accepts]
    #[arg(long, value_name = "λ", value_parser = parse_rate)]
    pub rate: Option<f64>,
    /// One daemon per network namespace (needs root, ip and nft)
    #[arg(long)]
    pub netns: bool,
    /// Run the cluster without a cluster key (`insecure = true`): datagrams
    /// and directory frames in clear, to measure what sealing costs
    #[arg(long)]
    pub insecure: bool,
    /// Runs of each configuration
    #[arg(long, value_name = "R", default_value_t = 1,
          value_parser = clap::value_parser!(u32).range(1..))]
    pub runs: u32,
    /// The course project's grid: P in 2, 4, 8 × M in 100, 1000, 10000 (with --rate for each)
    #[arg(long)]
    pub seed_table: bool,
    /// One JSON object per run per line instead of the table
    #[arg(long)]
    pub json: bool,
    /// Seconds a run may take, joins included, before it fails
    #[arg(long, value_name = "SECS", default_value_t = 120,
          value_parser = clap::value_parser!(u64).range(1..=86_400))]
    pub timeout: u64,
}

/// `--order`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum OrderArg {
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

/// A positive, finite number of messages per second.
fn parse_rate(text: &str) -> Result<f64, String> {
    match text.parse::<f64>() {
        Ok(rate) if rate.is_finite() && rate > 0.0 => Ok(rate),
        Ok(_) => Err("must be a number above 0".to_owned()),
        Err(e) => Err(e.to_string()),
    }
}

/// One run: what it sends, and which of the runs it is.
#[derive(Debug, Clone, PartialEq)]
pub struct RunParams {
    /// 1-based, across the whole invocation.
    pub index: u32,
    /// The repetition of this configuration (1..=runs).
    pub repetition: u32,
    pub nodes: u32,
    pub senders: u32,
    pub messages: u32,
    pub size: u32,
    pub order: Order,
    pub rate: Option<f64>,
    pub netns: bool,
}

impl RunParams {
    /// Messages every member must deliver: P×M.
    pub fn expected(&self) -> u64 {
        u64::from(self.senders) * u64::from(self.messages)
    }
}

impl Options {
    /// The runs in the order they happen: each configuration `--runs`
    /// times; the seed table's grid P-major. Fails (a usage error) if a run
    /// would carry more than [`MAX_MESSAGES_PER_RUN`].
    pub fn plan(&self) -> Result<Vec<RunParams>, String> {
        let configs: Vec<(u32, u32)> = if self.seed_table {
            SEED_TABLE_SENDERS
                .iter()
                .flat_map(|&p| SEED_TABLE_MESSAGES.iter().map(move |&m| (p, m)))
                .collect()
        } else {
            vec![(self.senders, self.messages)]
        };
        let mut runs = Vec::new();
        for (senders, messages) in configs {
            for repetition in 1..=self.runs {
                let index = u32::try_from(runs.len() + 1).map_err(|e| e.to_string())?;
                let run = RunParams {
                    index,
                    repetition,
                    nodes: self.nodes,
                    senders,
                    messages,
                    size: self.size,
                    order: self.order.into(),
                    rate: self.rate,
                    netns: self.netns,
                };
                if run.expected() > MAX_MESSAGES_PER_RUN {
                    return Err(format!(
                        "--senders × --messages is {}, more than {MAX_MESSAGES_PER_RUN}",
                        run.expected()
                    ));
                }
                runs.push(run);
            }
        }
        Ok(runs)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &[&str]) -> Result<Options, clap::Error> {
        Options::try_parse_from(std::iter::once("chorus-bench").chain(args.iter().copied()))
    }

    #[test]
    fn defaults_match_the_contract() {
        let o = parse(&[]).unwrap();
        assert_eq!((o.nodes, o.senders, o.messages, o.size), (3, 2, 1000, 64));
        assert_eq!(o.order, OrderArg::Total);
        assert_eq!((o.runs, o.timeout, o.rate), (1, 120, None));
        assert!(!o.netns && !o.json && !o.seed_table);
        let plan = o.plan().unwrap();
        assert_eq!(plan.len(), 1);
        assert_eq!(plan[0].expected(), 2000);
        assert_eq!(plan[0].order, Order::Total);
    }

    #[test]
    fn payloads_under_16_bytes_are_a_usage_error() {
        let e = parse(&["--size", "15"]).unwrap_err();
        assert_eq!(e.exit_code(), 2);
        assert!(parse(&["--size", "16"]).is_ok());
    }

    #[test]
    fn rates_must_be_positive() {
        assert!(parse(&["--rate", "0"]).is_err());
        assert!(parse(&["--rate", "-3"]).is_err());
        assert!(parse(&["--rate", "inf"]).is_err());
        assert_eq!(parse(&["--rate", "250.5"]).unwrap().rate, Some(250.5));
    }

    #[test]
    fn seed_table_is_the_grid_times_runs_with_the_rate() {
        let o = parse(&["--seed-table", "--runs", "2", "--rate", "100"]).unwrap();
        let plan = o.plan().unwrap();
        assert_eq!(plan.len(), 18);
        let cells: Vec<(u32, u32, u32)> = plan
            .iter()
            .map(|r| (r.senders, r.messages, r.repetition))
            .collect();
        assert_eq!(cells[0], (2, 100, 1));
        assert_eq!(cells[1], (2, 100, 2));
        assert_eq!(cells[2], (2, 1000, 1));
        assert_eq!(cells[17], (8, 10_000, 2));
        assert!(plan.iter().all(|r| r.rate == Some(100.0)));
        let indexes: Vec<u32> = plan.iter().map(|r| r.index).collect();
        assert_eq!(indexes, (1..=18).collect::<Vec<_>>());
    }

    #[test]
    fn seed_table_conflicts_with_explicit_senders() {
        assert!(parse(&["--seed-table", "--senders", "4"]).is_err());
    }

    #[test]
    fn oversized_runs_are_refused() {
        let o = parse(&["--senders", "1000", "--messages", "100000"]).unwrap();
        assert!(o.plan().unwrap_err().contains("more than"));
    }
}
