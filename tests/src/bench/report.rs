//! A run's results: the checks, and how they are printed (a table, or one
//! JSON object per line with `--json`).

use std::io::{self, Write};

use chorus::Order;
use serde::Serialize;

use crate::bench::cli::RunParams;
use crate::bench::daemons::{DaemonReport, DropScope};
use crate::bench::member::ListenerResult;
use crate::bench::sequence::{completeness, same_sequence, Completeness, MsgId};
use crate::bench::stats::MemberStats;

/// One listening member's line.
#[derive(Debug, Clone, Serialize)]
pub struct MemberReport {
    #[serde(flatten)]
    pub stats: MemberStats,
    #[serde(flatten)]
    pub completeness: Completeness,
    /// Deliveries with a payload the bench did not send as it came.
    pub malformed: u64,
    /// Views delivered while the run was going (membership changed).
    pub view_changes: u64,
}

/// Everything printed for one run.
#[derive(Debug, Clone, Serialize)]
pub struct RunReport {
    pub run: u32,
    pub repetition: u32,
    pub nodes: u32,
    pub senders: u32,
    pub messages: u32,
    pub size: u32,
    pub order: &'static str,
    /// Messages/s per sender; `null`: as fast as the daemon accepts.
    pub rate: Option<f64>,
    pub netns: bool,
    /// From the first send until the daemons had accepted every send.
    pub send_span_s: f64,
    pub members: Vec<MemberReport>,
    /// Every member delivered the same sequence (fifo: the same set with
    /// the same order per sender).
    pub same_sequence: bool,
    /// Every member delivered each of the P×M messages exactly once, and
    /// nothing malformed.
    pub complete: bool,
    /// Both checks hold.
    pub ok: bool,
    /// What each daemon did during the run (counter deltas); empty if not
    /// sampled.
    pub daemons: Vec<DaemonReport>,
    /// Whose `rcvbuf_errors` the daemons' are: `host` (loopback: one value
    /// shared by every daemon) or `namespace` (`--netns`: each its own).
    pub rcvbuf_errors_scope: DropScope,
}

impl RunReport {
    /// The report of `params`' run, from its listeners' results; the run's
    /// first send was at `first_send_ns` and the last sender was flushed at
    /// `flushed_ns`.
    pub fn new(
        params: &RunParams,
        listeners: &[ListenerResult],
        first_send_ns: u64,
        flushed_ns: u64,
    ) -> RunReport {
        let sequences: Vec<&[MsgId]> = listeners.iter().map(|l| &l.log.sequence[..]).collect();
        let same = same_sequence(params.order, &sequences);
        let members: Vec<MemberReport> = listeners
            .iter()
            .map(|l| MemberReport {
                stats: MemberStats::of(&l.log, first_send_ns),
                completeness: completeness(&l.log.sequence, params.senders, params.messages),
                malformed: l.log.malformed,
                view_changes: l.view_changes,
            })
            .collect();
        let complete = members.iter().all(|m| {
            m.completeness.is_exact() && m.malformed == 0 && m.stats.delivered == params.expected()
        });
        RunReport {
            run: params.index,
            repetition: params.repetition,
            nodes: params.nodes,
            senders: params.senders,
            messages: params.messages,
            size: params.size,
            order: params.order.as_str(),
            rate: params.rate,
            netns: params.netns,
            send_span_s: flushed_ns.saturating_sub(first_send_ns) as f64 / 1e9,
            members,
            same_sequence: same,
            complete,
            ok: same && complete,
            daemons: Vec::new(),
            rcvbuf_errors_scope: if params.netns {
                DropScope::Namespace
            } else {
                DropScope::Host
            },
        }
    }

    /// One line of JSON.
    pub fn json_line(&self) -> String {
        // A struct of numbers, strings and bools always serialises.
        serde_json::to_string(self).unwrap_or_else(|e| format!("{{\"error\":\"{e}\"}}"))
    }

    /// The human-readable table.
    pub fn write_table(&self, out: &mut impl Write) -> io::Result<()> {
        let rate = self.rate.map_or("as fast as accepted".to_owned(), |r| {
            format!("{r} msg/s per sender")
        });
        let place = if self.netns { "netns" } else { "loopback" };
        writeln!(
            out,
            "run {} ({place}): {} nodes, {} senders × {} messages of {} B, order {}, rate {rate}; \
             sends accepted in {:.3} s",
            self.run,
            self.nodes,
            self.senders,
            self.messages,
            self.size,
            self.order,
            self.send_span_s
        )?;
        writeln!(
            out,
            "  {:<24} {:>9} {:>11} {:>8} {:>10} {:>10} {:>10}",
            "member", "delivered", "msgs/s", "MB/s", "p50 µs", "p99 µs", "p999 µs"
        )?;
        for m in &self.members {
            let s = &m.stats;
            writeln!(
                out,
                "  {:<24} {:>9} {:>11.1} {:>8.3} {:>10.1} {:>10.1} {:>10.1}",
                s.member,
                s.delivered,
                s.msgs_per_s,
                s.mb_per_s,
                s.latency_us.p50,
                s.latency_us.p99,
                s.latency_us.p999
            )?;
            self.write_problems(out, m)?;
        }
        let what = if self.order == Order::Fifo.as_str() {
            "same sequence (fifo: same set, same order per sender)"
        } else {
            "same sequence"
        };
        writeln!(
            out,
            "  {what}: {}; every member got all {} messages once: {}",
            yes_no(self.same_sequence),
            u64::from(self.senders) * u64::from(self.messages),
            yes_no(self.complete)
        )?;
        self.write_daemons(out)
    }

    /// The daemons' counters during the run, a line each.
    fn write_daemons(&self, out: &mut impl Write) -> io::Result<()> {
        if self.daemons.is_empty() {
            return Ok(());
        }
        writeln!(
            out,
            "  {:<8} {:>11} {:>9} {:>9} {:>11} {:>10} {:>7} {:>12} {:>7}",
            "daemon",
            "retransmits",
            "NAKs sent",
            "NAKs recv",
            "tail probes",
            "win halved",
            "drops",
            "rcvbuf drops",
            "CPU s"
        )?;
        let n = |v: Option<u64>| v.map_or("-".to_owned(), |v| v.to_string());
        for d in &self.daemons {
            writeln!(
                out,
                "  {:<8} {:>11} {:>9} {:>9} {:>11} {:>10} {:>7} {:>12} {:>7}",
                d.node,
                n(d.retransmits),
                n(d.naks_sent),
                n(d.naks_received),
                n(d.tail_probes),
                n(d.window_decreases),
                n(d.drops),
                n(d.rcvbuf_errors),
                d.cpu_s.map_or("-".to_owned(), |c| format!("{c:.2}"))
            )?;
        }
        if self.rcvbuf_errors_scope == DropScope::Host {
            writeln!(
                out,
                "  (rcvbuf drops: UDP RcvbufErrors of the whole host, one value shared by every \
                 daemon on loopback)"
            )?;
        }
        Ok(())
    }

    /// What went wrong at member `m`, if anything.
    fn write_problems(&self, out: &mut impl Write, m: &MemberReport) -> io::Result<()> {
        let c = &m.completeness;
        if !c.is_exact() || m.malformed > 0 {
            writeln!(
                out,
                "    missing {}, duplicates {}, unexpected {}, malformed {}",
                c.missing, c.duplicates, c.unexpected, m.malformed
            )?;
        }
        if m.view_changes > 0 {
            writeln!(out, "    {} view change(s) during the run", m.view_changes)?;
        }
        Ok(())
    }
}

fn yes_no(b: bool) -> &'static str {
    if b {
        "yes"
    } else {
        "no"
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bench::payload::{encode, Stamp};
    use crate::bench::stats::MemberLog;

    fn params(order: Order) -> RunParams {
        RunParams {
            index: 1,
            repetition: 1,
            nodes: 2,
            senders: 2,
            messages: 2,
            size: 20,
            order,
            rate: None,
            netns: false,
        }
    }

    /// A listener that delivered `ids` (sender, number), each 1 µs after send.
    fn listener(member: &str, ids: &[(u32, u32)]) -> ListenerResult {
        let mut log = MemberLog::new(member, ids.len());
        let mut buf = Vec::new();
        for (i, &(sender, number)) in ids.iter().enumerate() {
            let sent_ns = 1_000 * i as u64;
            encode(
                Stamp {
                    sender,
                    number,
                    sent_ns,
                },
                20,
                &mut buf,
            );
            log.record(&buf, 20, sent_ns + 1_000, |_| true);
        }
        ListenerResult {
            log,
            view_changes: 0,
        }
    }

    const ALL: [(u32, u32); 4] = [(0, 0), (1, 0), (0, 1), (1, 1)];

    #[test]
    fn agreeing_complete_members_pass() {
        let ls = [listener("n1:a", &ALL), listener("n2:b", &ALL)];
        let r = RunReport::new(&params(Order::Total), &ls, 0, 10_000);
        assert!(r.ok && r.same_sequence && r.complete, "{r:?}");
        let json: serde_json::Value = serde_json::from_str(&r.json_line()).unwrap();
        assert_eq!(json["members"][1]["member"], "n2:b");
        assert_eq!(json["members"][0]["delivered"], 4);
        assert_eq!(json["members"][0]["missing"], 0);
        assert!(json["members"][0]["latency_us"]["p50"].as_f64().unwrap() > 0.0);
        assert_eq!(json["order"], "total");
        assert!(json["rate"].is_null());
    }

    #[test]
    fn a_different_order_or_a_loss_fails() {
        let swapped = [(1, 0), (0, 0), (0, 1), (1, 1)];
        let ls = [listener("n1:a", &ALL), listener("n2:b", &swapped)];
        let r = RunReport::new(&params(Order::Total), &ls, 0, 0);
        assert!(!r.same_sequence && r.complete && !r.ok);
        let fifo = RunReport::new(&params(Order::Fifo), &ls, 0, 0);
        assert!(fifo.same_sequence && fifo.ok, "fifo allows interleaving");
        let lossy = [listener("n1:a", &ALL), listener("n2:b", &ALL[..3])];
        let r = RunReport::new(&params(Order::Total), &lossy, 0, 0);
        assert!(!r.complete && !r.ok);
        assert_eq!(r.members[1].completeness.missing, 1);
        let mut table = Vec::new();
        r.write_table(&mut table).unwrap();
        let text = String::from_utf8(table).unwrap();
        assert!(text.contains("missing 1, duplicates 0"), "{text}");
        assert!(text.contains("same sequence: no"), "{text}");
        assert!(
            !text.contains("retransmits"),
            "no daemon lines unsampled: {text}"
        );
    }

    #[test]
    fn daemon_counters_print_under_the_table_and_in_json() {
        let ls = [listener("n1:a", &ALL), listener("n2:b", &ALL)];
        let mut r = RunReport::new(&params(Order::Total), &ls, 0, 10_000);
        r.daemons = vec![DaemonReport {
            node: "n1".into(),
            retransmits: Some(7),
            naks_sent: Some(1),
            naks_received: Some(2),
            tail_probes: Some(3),
            window_decreases: Some(4),
            drops: Some(6),
            rcvbuf_errors: Some(5),
            cpu_s: None,
        }];
        let mut table = Vec::new();
        r.write_table(&mut table).unwrap();
        let text = String::from_utf8(table).unwrap();
        assert!(text.contains("rcvbuf drops"), "{text}");
        assert!(text.contains("whole host"), "{text}");
        let json: serde_json::Value = serde_json::from_str(&r.json_line()).unwrap();
        assert_eq!(json["daemons"][0]["retransmits"], 7);
        assert_eq!(json["daemons"][0]["rcvbuf_errors"], 5);
        assert_eq!(json["daemons"][0]["drops"], 6);
        assert!(json["daemons"][0]["cpu_s"].is_null());
        assert_eq!(json["rcvbuf_errors_scope"], "host");
    }
}
