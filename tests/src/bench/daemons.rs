//! What the daemons did during a run: their counters (`chorusctl stats`,
//! through the client library), the kernel's UDP receive-buffer drops and
//! the daemons' CPU time, each sampled before and after the run.
//!
//! Drops are `RcvbufErrors` of the `Udp:` line of `/proc/PID/net/snmp`,
//! which is `/proc/net/snmp` of the daemon's network namespace: per node
//! with `--netns`; on loopback every daemon shares the host's namespace, so
//! the value is one for the whole host (other processes' drops included).

use std::path::Path;

use chorus::{Client, Stats};
use serde::Serialize;

use crate::cluster::Node;

/// Clock ticks per second of `/proc/PID/stat` (USER_HZ, 100 on Linux).
const USER_HZ: f64 = 100.0;

/// One daemon at one moment.
#[derive(Debug, Clone)]
pub struct Sample {
    node: String,
    stats: Option<Stats>,
    rcvbuf_errors: Option<u64>,
    cpu_s: Option<f64>,
}

/// Whose receive-buffer drops the report's counts are.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum DropScope {
    /// One value for the whole host, shared by every daemon (loopback).
    Host,
    /// Each daemon's own network namespace (`--netns`).
    Namespace,
}

/// One daemon's share of a run (counter deltas). A field is `null` when
/// it could not be read.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct DaemonReport {
    pub node: String,
    pub retransmits: Option<u64>,
    pub naks_sent: Option<u64>,
    pub naks_received: Option<u64>,
    pub tail_probes: Option<u64>,
    pub window_decreases: Option<u64>,
    /// Datagrams and messages the daemon dropped, all reasons summed
    /// (`dropped_*` of `chorusctl stats`; see [`crate::stats::drops`]).
    pub drops: Option<u64>,
    /// UDP datagrams the kernel dropped for a full receive buffer (see
    /// [`DropScope`]).
    pub rcvbuf_errors: Option<u64>,
    /// Daemon CPU seconds (user + system).
    pub cpu_s: Option<f64>,
}

/// Samples every daemon; what cannot be read is left out (with a warning
/// for the counters), never an error: the run's own results stand.
pub fn sample_all(nodes: &[Node]) -> Vec<Sample> {
    nodes.iter().map(sample).collect()
}

fn sample(node: &Node) -> Sample {
    let stats = match Client::connect(node.socket_path()).and_then(|mut c| c.stats()) {
        Ok(s) => Some(s),
        Err(e) => {
            eprintln!("chorus-bench: {}: no counters: {e}", node.name);
            None
        }
    };
    let pid = node.process().pid();
    let proc_dir = Path::new("/proc").join(pid.to_string());
    Sample {
        node: node.name.clone(),
        stats,
        rcvbuf_errors: std::fs::read_to_string(proc_dir.join("net/snmp"))
            .ok()
            .and_then(|t| udp_rcvbuf_errors(&t)),
        cpu_s: std::fs::read_to_string(proc_dir.join("stat"))
            .ok()
            .and_then(|t| cpu_seconds(&t)),
    }
}

/// Per daemon: `after` minus `before` (samples of the same nodes, in order).
pub fn deltas(before: &[Sample], after: &[Sample]) -> Vec<DaemonReport> {
    before
        .iter()
        .zip(after)
        .map(|(b, a)| {
            let counter = |f: fn(&Stats) -> u64| -> Option<u64> {
                Some(f(a.stats.as_ref()?).saturating_sub(f(b.stats.as_ref()?)))
            };
            DaemonReport {
                node: a.node.clone(),
                retransmits: counter(|s| s.retransmits),
                naks_sent: counter(|s| s.naks_sent),
                naks_received: counter(|s| s.naks_received),
                tail_probes: counter(|s| s.tail_probes),
                window_decreases: counter(|s| s.window_decreases),
                drops: counter(crate::stats::drops),
                rcvbuf_errors: a
                    .rcvbuf_errors
                    .zip(b.rcvbuf_errors)
                    .map(|(a, b)| a.saturating_sub(b)),
                cpu_s: a.cpu_s.zip(b.cpu_s).map(|(a, b)| (a - b).max(0.0)),
            }
        })
        .collect()
}

/// `RcvbufErrors` from the text of `/proc/net/snmp` (a `Udp:` header line,
/// then a `Udp:` line of values).
fn udp_rcvbuf_errors(snmp: &str) -> Option<u64> {
    let mut udp = snmp.lines().filter(|l| l.starts_with("Udp:"));
    let names = udp.next()?;
    let values = udp.next()?;
    let at = names.split_whitespace().position(|n| n == "RcvbufErrors")?;
    values.split_whitespace().nth(at)?.parse().ok()
}

/// utime + stime in seconds from the text of `/proc/PID/stat`.
fn cpu_seconds(stat: &str) -> Option<f64> {
    // The command name (field 2) may hold spaces: count from its ')'.
    let rest = &stat[stat.rfind(')')? + 1..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // Field 3 (state) is fields[0]; utime is field 14, stime 15.
    let utime: u64 = fields.get(11)?.parse().ok()?;
    let stime: u64 = fields.get(12)?.parse().ok()?;
    Some((utime + stime) as f64 / USER_HZ)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_rcvbuf_errors_from_the_udp_lines() {
        let snmp = "Ip: Forwarding DefaultTTL\nIp: 1 64\n\
            Udp: InDatagrams NoPorts InErrors OutDatagrams RcvbufErrors SndbufErrors InCsumErrors IgnoredMulti MemErrors\n\
            Udp: 100 2 7 90 5 0 0 3 0\n\
            UdpLite: InDatagrams NoPorts InErrors OutDatagrams RcvbufErrors SndbufErrors InCsumErrors IgnoredMulti MemErrors\n\
            UdpLite: 0 0 0 0 0 0 0 0 0\n";
        assert_eq!(udp_rcvbuf_errors(snmp), Some(5));
        assert_eq!(udp_rcvbuf_errors("Ip: a\nIp: 1\n"), None);
    }

    #[test]
    fn reads_cpu_time_after_the_command_name() {
        let stat =
            "4242 (chorusd (x) y) S 1 4242 4242 0 -1 4194560 500 0 0 0 250 50 0 0 20 0 3 0 1 2 3";
        assert_eq!(cpu_seconds(stat), Some(3.0));
        assert_eq!(cpu_seconds("garbage"), None);
    }

    #[test]
    fn deltas_subtract_and_leave_unknowns_null() {
        let s = |retransmits, drops, cpu| Sample {
            node: "n1".into(),
            stats: Some(Stats {
                retransmits,
                dropped_duplicate: retransmits,
                dropped_other_cluster: 1,
                ..Stats::default()
            }),
            rcvbuf_errors: drops,
            cpu_s: cpu,
        };
        let d = deltas(&[s(3, Some(10), None)], &[s(8, Some(12), Some(1.0))]);
        assert_eq!(d[0].retransmits, Some(5));
        assert_eq!(d[0].naks_sent, Some(0));
        assert_eq!(d[0].drops, Some(5), "the drops' increases, summed");
        assert_eq!(d[0].rcvbuf_errors, Some(2));
        assert_eq!(d[0].cpu_s, None);
        let mut gone = s(8, None, None);
        gone.stats = None;
        assert_eq!(deltas(&[s(3, None, None)], &[gone])[0].retransmits, None);
    }
}
