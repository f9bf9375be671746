//! Workloads shared by several end-to-end tests.

use std::time::{Duration, Instant};

use crate::check::{SenderWork, Trace};
use crate::client::{numbered_payloads, SendProc};
use crate::cluster::{DirectoryProc, Launcher, Node};
use crate::error::{HarnessError, Result};
use crate::listener::{Listener, ViewEvent};
use crate::testenv::TestEnv;

/// What a concurrent-senders run produced.
#[derive(Debug)]
pub struct TotalOrderRun {
    /// What every listener delivered.
    pub traces: Vec<Trace>,
    /// What every sender sent.
    pub work: Vec<SenderWork>,
    /// From the first send to the last listener having every message.
    pub elapsed: Duration,
}

impl TotalOrderRun {
    /// Messages sent in total.
    pub fn sent(&self) -> usize {
        self.work.iter().map(|w| w.payloads.len()).sum()
    }

    /// A one-line summary for the test output.
    pub fn summary(&self) -> String {
        let delivered: Vec<usize> = self.traces.iter().map(|t| t.deliveries.len()).collect();
        let secs = self.elapsed.as_secs_f64();
        format!(
            "{} senders sent {} messages; delivered per listener {delivered:?}; {secs:.2} s ({:.0} msg/s per listener)",
            self.work.len(),
            self.sent(),
            self.sent() as f64 / secs.max(1e-9)
        )
    }
}

/// On every node a listener `l<k>`; returns them once every one sees a view
/// holding them all, with their member names and that view.
pub fn listeners_in_full_view(
    env: &TestEnv,
    nodes: &[Node],
    group: &str,
    timeout: Duration,
) -> Result<(Vec<Listener>, Vec<String>, ViewEvent)> {
    let listeners = nodes
        .iter()
        .enumerate()
        .map(|(i, node)| Listener::on_node(env, node, group, &format!("l{}", i + 1)))
        .collect::<Result<Vec<_>>>()?;
    let members: Vec<String> = nodes
        .iter()
        .enumerate()
        .map(|(i, node)| node.member(&format!("l{}", i + 1)))
        .collect();
    let mut view = None;
    for listener in &listeners {
        view = Some(listener.wait_view_with(&members, timeout)?);
    }
    let view = view.ok_or_else(|| HarnessError::Unexpected("no node, no listener".into()))?;
    Ok((listeners, members, view))
}

/// On every node: a listener `l<k>`, then (once every listener sees a view
/// with all of them) a sender `s<k>` sending `per_sender` numbered lines, all
/// senders at once. Waits for every listener to deliver everything.
///
/// Also checks that each message's `sender` is the `NODE:NAME` of the
/// `chorusctl send --name` that sent it.
pub fn concurrent_senders(
    env: &TestEnv,
    nodes: &[Node],
    group: &str,
    per_sender: usize,
    timeout: Duration,
) -> Result<TotalOrderRun> {
    concurrent_senders_sized(env, nodes, group, per_sender, None, timeout)
}

/// As [`concurrent_senders`], with every payload padded to `payload_bytes`
/// bytes when given (see [`padded_payloads`]).
pub fn concurrent_senders_sized(
    env: &TestEnv,
    nodes: &[Node],
    group: &str,
    per_sender: usize,
    payload_bytes: Option<usize>,
    timeout: Duration,
) -> Result<TotalOrderRun> {
    let (listeners, _, _) = listeners_in_full_view(env, nodes, group, timeout)?;

    let mut work = sender_work(nodes.len(), "s", per_sender);
    if let Some(size) = payload_bytes {
        for w in &mut work {
            w.payloads = padded_payloads(std::mem::take(&mut w.payloads), size);
        }
    }
    let start = Instant::now();
    let senders = start_senders(env, nodes, group, &work)?;
    for sender in senders {
        sender.finish(timeout)?;
    }
    let total = work.len() * per_sender;
    for listener in &listeners {
        listener.wait_messages(total, timeout)?;
    }
    let elapsed = start.elapsed();
    let traces: Vec<Trace> = listeners.iter().map(Listener::trace).collect();
    check_sender_names(&traces, nodes, &work)?;
    Ok(TotalOrderRun {
        traces,
        work,
        elapsed,
    })
}

/// Senders on every node; once a tenth of their messages are delivered,
/// `kill -9` the directory and start it again. Then a second sender per
/// node joins through the restarted directory and sends as many. Every
/// listener must deliver every message of both rounds, in one order: the
/// groups go on while the directory is away, and it recovers their views
/// from what the daemons tell it.
pub fn directory_restart_mid_stream(
    env: &TestEnv,
    nodes: &[Node],
    directory: &mut DirectoryProc,
    group: &str,
    per_sender: usize,
    timeout: Duration,
) -> Result<TotalOrderRun> {
    directory_outage_mid_stream(env, nodes, group, per_sender, timeout, || {
        directory.kill_and_restart(env, &Launcher::Host, 2)
    })
}

/// As [`directory_restart_mid_stream`], but the primary directory is killed
/// for good: every daemon (registered with the primary until then) must
/// move to `standby`, the next address in its list, which rebuilds the
/// group from the daemons' reports; the second round joins through the
/// standby.
pub fn directory_failover_mid_stream(
    env: &TestEnv,
    nodes: &[Node],
    primary: &DirectoryProc,
    standby: &DirectoryProc,
    group: &str,
    per_sender: usize,
    timeout: Duration,
) -> Result<TotalOrderRun> {
    for node in nodes {
        check_directory_link(node, primary)?;
    }
    let run = directory_outage_mid_stream(env, nodes, group, per_sender, timeout, || {
        primary.process().kill();
        Ok(())
    })?;
    standby.process().ensure_running()?;
    for node in nodes {
        check_directory_link(node, standby)?;
    }
    Ok(run)
}

/// The workload of [`directory_restart_mid_stream`], with `outage` done to
/// the directory once every first-round sender is a tenth of the way
/// through.
fn directory_outage_mid_stream(
    env: &TestEnv,
    nodes: &[Node],
    group: &str,
    per_sender: usize,
    timeout: Duration,
    outage: impl FnOnce() -> Result<()>,
) -> Result<TotalOrderRun> {
    let (listeners, _, _) = listeners_in_full_view(env, nodes, group, timeout)?;
    let start = Instant::now();
    let first = sender_work(nodes.len(), "s", per_sender);
    let senders = start_senders(env, nodes, group, &first)?;
    // Mid-stream: every sender has joined (a join in flight when the
    // directory dies is refused) and is a tenth of the way through.
    let tenth: Vec<String> = first
        .iter()
        .map(|w| format!("{}-{:06}", w.label, per_sender / 10))
        .collect();
    listeners[0].wait_until("a tenth of every sender's messages", timeout, |seen| {
        let got: std::collections::BTreeSet<&str> =
            seen.messages().filter_map(|m| m.data.as_deref()).collect();
        tenth.iter().all(|p| got.contains(p.as_str())).then_some(())
    })?;
    outage()?;
    for sender in senders {
        sender.finish(timeout)?;
    }
    // A join while a daemon's directory link is down is refused
    // (Unavailable): the second round starts once every daemon is back.
    for node in nodes {
        wait_registered(node, timeout)?;
    }
    let second = sender_work(nodes.len(), "t", per_sender);
    let senders = start_senders(env, nodes, group, &second)?;
    for sender in senders {
        sender.finish(timeout)?;
    }
    let total = (first.len() + second.len()) * per_sender;
    for listener in &listeners {
        listener.wait_messages(total, timeout)?;
    }
    let elapsed = start.elapsed();
    let traces: Vec<Trace> = listeners.iter().map(Listener::trace).collect();
    check_sender_names(&traces, nodes, &first)?;
    check_sender_names(&traces, nodes, &second)?;
    let work: Vec<SenderWork> = first.into_iter().chain(second).collect();
    Ok(TotalOrderRun {
        traces,
        work,
        elapsed,
    })
}

/// One sender per node, `<prefix>1`..`<prefix>N`, each with `per_sender`
/// numbered payloads.
pub fn sender_work(nodes: usize, prefix: &str, per_sender: usize) -> Vec<SenderWork> {
    (1..=nodes)
        .map(|k| SenderWork {
            label: format!("{prefix}{k}"),
            payloads: numbered_payloads(&format!("{prefix}{k}"), per_sender),
        })
        .collect()
}

/// `payloads` (numbered lines) each padded to `size` bytes: `label-000001-`
/// then `x`s. A payload already as long stays as it is. Every padded line
/// still starts with its numbered prefix, so the checkers and the sender
/// names check work unchanged.
pub fn padded_payloads(payloads: Vec<String>, size: usize) -> Vec<String> {
    payloads
        .into_iter()
        .map(|p| {
            if p.len() + 1 >= size {
                p
            } else {
                let pad = size - p.len() - 1;
                format!("{p}-{}", "x".repeat(pad))
            }
        })
        .collect()
}

/// Starts `work[k]`'s sender on `nodes[k]`.
pub fn start_senders(
    env: &TestEnv,
    nodes: &[Node],
    group: &str,
    work: &[SenderWork],
) -> Result<Vec<SendProc>> {
    nodes
        .iter()
        .zip(work)
        .map(|(node, w)| SendProc::on_node(env, node, group, &w.label, &[], w.payloads.clone()))
        .collect()
}

/// Polls `node`'s status until its directory link is up again (the daemon
/// reports no event for it).
fn wait_registered(node: &Node, timeout: Duration) -> Result<()> {
    let deadline = Instant::now() + timeout;
    let fail = |e: chorus::Error| HarnessError::Unexpected(format!("{}: status: {e}", node.name));
    let mut client = chorus::Client::connect(node.socket_path()).map_err(fail)?;
    while !client.status().map_err(fail)?.connected {
        if Instant::now() > deadline {
            return Err(HarnessError::Unexpected(format!(
                "{}: not registered with a directory again within {timeout:?}",
                node.name
            )));
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    Ok(())
}

/// `node` is registered (its status says connected) with `directory`:
/// status names the directory its link is up with.
fn check_directory_link(node: &Node, directory: &DirectoryProc) -> Result<()> {
    let fail = |e: chorus::Error| HarnessError::Unexpected(format!("{}: status: {e}", node.name));
    let status = chorus::Client::connect(node.socket_path())
        .and_then(|mut c| c.status())
        .map_err(fail)?;
    if !status.connected || status.directory != directory.listen.to_string() {
        return Err(HarnessError::Unexpected(format!(
            "{}: expected registered with the directory at {}; status says {:?} (connected: {})",
            node.name, directory.listen, status.directory, status.connected
        )));
    }
    Ok(())
}

/// Every payload of sender `s<k>` must carry sender `n<k>:s<k>`.
fn check_sender_names(traces: &[Trace], nodes: &[Node], work: &[SenderWork]) -> Result<()> {
    for trace in traces {
        for d in &trace.deliveries {
            let owner = work
                .iter()
                .zip(nodes)
                .find(|(w, _)| d.data.starts_with(&format!("{}-", w.label)));
            if let Some((w, node)) = owner {
                let expected = node.member(&w.label);
                if d.sender != expected {
                    return Err(HarnessError::Unexpected(format!(
                        "{}: {:?} has sender {:?}, expected {expected:?}",
                        trace.listener, d.data, d.sender
                    )));
                }
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn padded_payloads_have_the_size_and_keep_their_prefix() {
        let p = padded_payloads(numbered_payloads("s1", 2), 1000);
        assert!(p.iter().all(|l| l.len() == 1000));
        assert!(p[1].starts_with("s1-000002-x"));
        assert_eq!(padded_payloads(vec!["s1-000001".into()], 5), ["s1-000001"]);
    }
}
