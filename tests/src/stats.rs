//! The daemons' data-path counters (`Client::stats`, what `chorusctl stats`
//! shows) read from every node of a cluster and summed, for tests that bound
//! what the protocol spent (retransmissions, NAKs) rather than only what it
//! delivered; and a sampler that watches the flow windows during a run.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use chorus::{Client, GroupStats, Stats};

use crate::cluster::Node;
use crate::error::{HarnessError, Result};

/// Every node's counters at one moment (or their change over a period), and
/// their sums.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ClusterStats {
    /// Per node, in the order of the nodes read: its name and counters.
    pub nodes: Vec<(String, Stats)>,
}

impl ClusterStats {
    /// Reads every node's counters through the client library.
    pub fn read(nodes: &[Node]) -> Result<ClusterStats> {
        let nodes = nodes
            .iter()
            .map(|node| Ok((node.name.clone(), read_node(node)?)))
            .collect::<Result<Vec<_>>>()?;
        Ok(ClusterStats { nodes })
    }

    /// What happened between `before` and `self` (read from the same nodes):
    /// every counter's increase. Groups (a state, not a counter) are `self`'s.
    pub fn since(&self, before: &ClusterStats) -> ClusterStats {
        let nodes = self
            .nodes
            .iter()
            .map(|(name, after)| {
                let base = before
                    .nodes
                    .iter()
                    .find(|(n, _)| n == name)
                    .map(|(_, s)| s.clone())
                    .unwrap_or_default();
                (name.clone(), counter_delta(after, &base))
            })
            .collect();
        ClusterStats { nodes }
    }

    /// Every counter summed over the nodes (groups: all nodes' entries).
    pub fn total(&self) -> Stats {
        let mut t = Stats::default();
        for (_, s) in &self.nodes {
            t.datagrams_in += s.datagrams_in;
            t.bytes_in += s.bytes_in;
            t.datagrams_out += s.datagrams_out;
            t.bytes_out += s.bytes_out;
            t.malformed_in += s.malformed_in;
            t.messages_accepted += s.messages_accepted;
            t.messages_delivered += s.messages_delivered;
            t.naks_sent += s.naks_sent;
            t.naks_received += s.naks_received;
            t.retransmits += s.retransmits;
            t.tail_probes += s.tail_probes;
            t.window_decreases += s.window_decreases;
            t.dropped_other_cluster += s.dropped_other_cluster;
            t.dropped_no_group += s.dropped_no_group;
            t.dropped_duplicate += s.dropped_duplicate;
            t.dropped_beyond_window += s.dropped_beyond_window;
            t.dropped_before_base += s.dropped_before_base;
            t.sessions_dropped_slow += s.sessions_dropped_slow;
            t.refused_unauthentic += s.refused_unauthentic;
            t.refused_replayed += s.refused_replayed;
            t.groups.extend(s.groups.iter().cloned());
        }
        t
    }

    /// Sum of `retransmits` over the nodes.
    pub fn retransmits(&self) -> u64 {
        self.nodes.iter().map(|(_, s)| s.retransmits).sum()
    }

    /// Sum of `naks_received` over the nodes.
    pub fn naks_received(&self) -> u64 {
        self.nodes.iter().map(|(_, s)| s.naks_received).sum()
    }

    /// A one-line summary of the sums (and retransmits per node) for the
    /// test output.
    pub fn summary(&self) -> String {
        let t = self.total();
        let per_node: Vec<String> = self
            .nodes
            .iter()
            .map(|(n, s)| format!("{n}={}", s.retransmits))
            .collect();
        format!(
            "accepted {} delivered {} datagrams out {} in {}; retransmits {} [{}] \
             (tail probes {}); naks sent {} received {}; window decreases {}; \
             drops {} (duplicate {}, beyond window {}); slow sessions dropped {}",
            t.messages_accepted,
            t.messages_delivered,
            t.datagrams_out,
            t.datagrams_in,
            t.retransmits,
            per_node.join(" "),
            t.tail_probes,
            t.naks_sent,
            t.naks_received,
            t.window_decreases,
            drops(&t),
            t.dropped_duplicate,
            t.dropped_beyond_window,
            t.sessions_dropped_slow,
        )
    }
}

/// Datagrams and messages a daemon dropped, all reasons summed (not the
/// sessions it dropped: another unit, and a test sees those as lost
/// members anyway).
pub fn drops(s: &Stats) -> u64 {
    s.dropped_other_cluster
        + s.dropped_no_group
        + s.dropped_duplicate
        + s.dropped_beyond_window
        + s.dropped_before_base
}

fn read_node(node: &Node) -> Result<Stats> {
    Client::connect(node.socket_path())
        .and_then(|mut c| c.stats())
        .map_err(|e| HarnessError::Unexpected(format!("{}: stats: {e}", node.name)))
}

fn counter_delta(after: &Stats, before: &Stats) -> Stats {
    let d = |f: fn(&Stats) -> u64| f(after).saturating_sub(f(before));
    Stats {
        datagrams_in: d(|s| s.datagrams_in),
        bytes_in: d(|s| s.bytes_in),
        datagrams_out: d(|s| s.datagrams_out),
        bytes_out: d(|s| s.bytes_out),
        malformed_in: d(|s| s.malformed_in),
        messages_accepted: d(|s| s.messages_accepted),
        messages_delivered: d(|s| s.messages_delivered),
        naks_sent: d(|s| s.naks_sent),
        naks_received: d(|s| s.naks_received),
        retransmits: d(|s| s.retransmits),
        tail_probes: d(|s| s.tail_probes),
        window_decreases: d(|s| s.window_decreases),
        dropped_other_cluster: d(|s| s.dropped_other_cluster),
        dropped_no_group: d(|s| s.dropped_no_group),
        dropped_duplicate: d(|s| s.dropped_duplicate),
        dropped_beyond_window: d(|s| s.dropped_beyond_window),
        dropped_before_base: d(|s| s.dropped_before_base),
        sessions_dropped_slow: d(|s| s.sessions_dropped_slow),
        refused_unauthentic: d(|s| s.refused_unauthentic),
        refused_replayed: d(|s| s.refused_replayed),
        groups: after.groups.clone(),
    }
}

/// Polls every node's stats from a thread while a workload runs, and
/// records each group entry whose flow window was over its cap.
#[derive(Debug)]
pub struct WindowSampler {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<Result<WindowSamples>>>,
}

/// What a [`WindowSampler`] saw.
#[derive(Debug, Clone, Default)]
pub struct WindowSamples {
    /// Stats read (one per node per round).
    pub reads: usize,
    /// Group entries seen (a group on a node, in one read).
    pub group_entries: usize,
    /// The nodes that showed at least one group entry.
    pub nodes_with_groups: std::collections::BTreeSet<String>,
    /// The largest `window_bytes` seen, and its entry's cap.
    pub max_window: Option<(u64, u64)>,
    /// The largest `in_flight_bytes` seen.
    pub max_in_flight: u64,
    /// Entries with `window_bytes > window_cap_bytes` (the first few, with
    /// their node).
    pub over_cap: Vec<(String, GroupStats)>,
    /// How many entries were over their cap in all.
    pub over_cap_count: usize,
}

impl WindowSamples {
    fn record(&mut self, node: &str, g: &GroupStats) {
        self.group_entries += 1;
        if !self.nodes_with_groups.contains(node) {
            self.nodes_with_groups.insert(node.to_owned());
        }
        let larger = match self.max_window {
            Some((w, _)) => g.window_bytes > w,
            None => true,
        };
        if larger {
            self.max_window = Some((g.window_bytes, g.window_cap_bytes));
        }
        self.max_in_flight = self.max_in_flight.max(g.in_flight_bytes);
        if g.window_bytes > g.window_cap_bytes {
            self.over_cap_count += 1;
            if self.over_cap.len() < 5 {
                self.over_cap.push((node.to_owned(), g.clone()));
            }
        }
    }

    /// Records the group entries of one read of every node.
    pub fn record_all(&mut self, stats: &ClusterStats) {
        for (node, s) in &stats.nodes {
            self.reads += 1;
            for g in &s.groups {
                self.record(node, g);
            }
        }
    }

    /// A one-line summary for the test output.
    pub fn summary(&self) -> String {
        let (w, cap) = self.max_window.unwrap_or_default();
        format!(
            "{} reads, {} group entries on {} nodes; largest window {w} B (cap {cap} B); \
             largest in flight {} B; {} entries over their cap",
            self.reads,
            self.group_entries,
            self.nodes_with_groups.len(),
            self.max_in_flight,
            self.over_cap_count
        )
    }
}

impl WindowSampler {
    /// Starts reading every node's stats each `interval`. `nodes` gives the
    /// socket paths (the nodes stay owned by the cluster).
    pub fn start(nodes: &[Node], interval: Duration) -> WindowSampler {
        let sockets: Vec<(String, std::path::PathBuf)> = nodes
            .iter()
            .map(|n| (n.name.clone(), n.socket.clone()))
            .collect();
        let stop = Arc::new(AtomicBool::new(false));
        let flag = Arc::clone(&stop);
        let thread = std::thread::spawn(move || {
            let mut clients = sockets
                .iter()
                .map(|(name, path)| {
                    Client::connect(path)
                        .map(|c| (name.clone(), c))
                        .map_err(|e| HarnessError::Unexpected(format!("{name}: connect: {e}")))
                })
                .collect::<Result<Vec<_>>>()?;
            let mut samples = WindowSamples::default();
            while !flag.load(Ordering::Relaxed) {
                for (name, client) in &mut clients {
                    let s = client
                        .stats()
                        .map_err(|e| HarnessError::Unexpected(format!("{name}: stats: {e}")))?;
                    samples.reads += 1;
                    for g in &s.groups {
                        samples.record(name, g);
                    }
                }
                std::thread::sleep(interval);
            }
            Ok(samples)
        });
        WindowSampler {
            stop,
            thread: Some(thread),
        }
    }

    /// Stops the sampling and returns what it saw.
    pub fn stop(mut self) -> Result<WindowSamples> {
        self.stop.store(true, Ordering::Relaxed);
        match self.thread.take().map(JoinHandle::join) {
            Some(Ok(r)) => r,
            Some(Err(_)) => Err(HarnessError::Unexpected("stats sampler panicked".into())),
            None => Ok(WindowSamples::default()),
        }
    }
}

impl Drop for WindowSampler {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}
