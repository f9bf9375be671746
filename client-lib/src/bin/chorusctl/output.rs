//! What chorusctl prints: the contract's JSON lines and short human lines.
//!
//! Every line is flushed as soon as it is written, since scripts and tests
//! read `listen` output while it runs.

use std::io::{self, Write};

use base64::Engine as _;
use chorus::{Event, GroupInfo, GroupStats, Message, Separation, Stats, Status, ViewInfo};
use serde::Serialize;

/// Writing standard output failed (usually: the reader went away).
#[derive(Debug)]
pub struct Printed(pub io::Error);

/// Standard output, one flushed line at a time.
pub struct Out {
    w: Box<dyn Write>,
}

impl Out {
    pub fn stdout() -> Out {
        Out {
            w: Box::new(io::stdout().lock()),
        }
    }

    fn lines(&mut self, lines: &[String]) -> Result<(), Printed> {
        for line in lines {
            writeln!(self.w, "{line}").map_err(Printed)?;
        }
        self.w.flush().map_err(Printed)
    }

    pub fn event(&mut self, event: &Event, json: bool) -> Result<(), Printed> {
        let line = match (event, json) {
            (Event::View(v), true) => view_json(v, Some("view")),
            (Event::View(v), false) => view_line(v),
            (Event::Message(m), true) => message_json(m),
            (Event::Message(m), false) => message_line(m),
            (Event::Separated(s), true) => separated_json(s),
            (Event::Separated(s), false) => separated_line(s),
        };
        self.lines(&[line])
    }

    pub fn status(&mut self, s: &Status, json: bool) -> Result<(), Printed> {
        if json {
            return self.lines(&[status_json(s)]);
        }
        let directory = match (s.directory.as_str(), s.connected) {
            ("", _) => "(none)".to_owned(),
            (d, true) => format!("{d} (connected)"),
            (d, false) => format!("{d} (not connected)"),
        };
        let rows = [
            (
                "node",
                format!(
                    "{} (id {}, incarnation {})",
                    s.node, s.node_id, s.incarnation
                ),
            ),
            ("directory", directory),
            ("groups", s.groups.to_string()),
            ("members", s.members.to_string()),
            ("version", s.version.clone()),
        ];
        self.lines(&key_values(&rows))
    }

    pub fn stats(&mut self, s: &Stats, json: bool) -> Result<(), Printed> {
        if json {
            return self.lines(&[stats_json(s)]);
        }
        let mut lines = key_values(&stats_rows(s));
        lines.push(String::new());
        lines.extend(group_stats_table(&s.groups));
        self.lines(&lines)
    }

    pub fn groups(&mut self, groups: &[GroupInfo], json: bool) -> Result<(), Printed> {
        if json {
            return self.lines(&groups.iter().map(group_json).collect::<Vec<_>>());
        }
        self.lines(&groups_table(groups))
    }

    pub fn members(&mut self, v: &ViewInfo, json: bool) -> Result<(), Printed> {
        if json {
            return self.lines(&[view_json(v, None)]);
        }
        let mut rows = vec![
            ("group", v.group.clone()),
            ("view", v.view.to_string()),
            ("sequencer", v.sequencer.clone()),
        ];
        if v.members.is_empty() {
            rows.push(("members", "(none)".to_owned()));
        }
        for (i, m) in v.members.iter().enumerate() {
            rows.push((if i == 0 { "members" } else { "" }, m.clone()));
        }
        self.lines(&key_values(&rows))
    }
}

#[derive(Serialize)]
struct ViewJson<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    event: Option<&'static str>,
    group: &'a str,
    view: u64,
    members: &'a [String],
    sequencer: &'a str,
}

#[derive(Serialize)]
struct MessageJson<'a> {
    event: &'static str,
    group: &'a str,
    view: u64,
    sender: &'a str,
    order: &'static str,
    seq: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    data: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    data_base64: Option<String>,
}

#[derive(Serialize)]
struct SeparatedJson<'a> {
    event: &'static str,
    group: &'a str,
    view: u64,
    rejoining: bool,
    reason: &'a str,
}

#[derive(Serialize)]
struct StatusJson<'a> {
    node: &'a str,
    node_id: u32,
    incarnation: u64,
    directory: &'a str,
    connected: bool,
    groups: u32,
    members: u32,
    version: &'a str,
}

#[derive(Serialize)]
struct StatsJson<'a> {
    datagrams_in: u64,
    bytes_in: u64,
    datagrams_out: u64,
    bytes_out: u64,
    malformed_in: u64,
    messages_accepted: u64,
    messages_delivered: u64,
    naks_sent: u64,
    naks_received: u64,
    retransmits: u64,
    tail_probes: u64,
    window_decreases: u64,
    dropped_other_cluster: u64,
    dropped_no_group: u64,
    dropped_duplicate: u64,
    dropped_beyond_window: u64,
    dropped_before_base: u64,
    sessions_dropped_slow: u64,
    refused_unauthentic: u64,
    refused_replayed: u64,
    groups: Vec<GroupStatsJson<'a>>,
}

#[derive(Serialize)]
struct GroupStatsJson<'a> {
    group: &'a str,
    view: u64,
    sequencer: bool,
    queued: u32,
    in_flight_bytes: u64,
    window_bytes: u64,
    window_cap_bytes: u64,
}

#[derive(Serialize)]
struct GroupJson<'a> {
    group: &'a str,
    address: &'a str,
    view: u64,
    members: u32,
    local: bool,
}

/// Serializes one line. The structs above hold only strings, numbers and
/// bools, which always serialize, so the fallback is never printed.
fn to_json(value: &impl Serialize) -> String {
    serde_json::to_string(value).unwrap_or_else(|e| format!("{{\"error\":\"{e}\"}}"))
}

/// A view line; `event` is `Some("view")` in `listen`, `None` for `members`.
fn view_json(v: &ViewInfo, event: Option<&'static str>) -> String {
    to_json(&ViewJson {
        event,
        group: &v.group,
        view: v.view,
        members: &v.members,
        sequencer: &v.sequencer,
    })
}

fn message_json(m: &Message) -> String {
    let text = std::str::from_utf8(&m.payload).ok();
    to_json(&MessageJson {
        event: "message",
        group: &m.group,
        view: m.view,
        sender: &m.sender,
        order: m.order.as_str(),
        seq: m.seq,
        data: text,
        data_base64: match text {
            Some(_) => None,
            None => Some(base64::engine::general_purpose::STANDARD.encode(&m.payload)),
        },
    })
}

fn separated_json(s: &Separation) -> String {
    to_json(&SeparatedJson {
        event: "separated",
        group: &s.group,
        view: s.view,
        rejoining: s.rejoining,
        reason: &s.reason,
    })
}

/// `separated chat after-view=10 rejoining=true: this node was declared dead ...`
fn separated_line(s: &Separation) -> String {
    format!(
        "separated {} after-view={} rejoining={}: {}",
        s.group, s.view, s.rejoining, s.reason
    )
}

fn status_json(s: &Status) -> String {
    to_json(&StatusJson {
        node: &s.node,
        node_id: s.node_id,
        incarnation: s.incarnation,
        directory: &s.directory,
        connected: s.connected,
        groups: s.groups,
        members: s.members,
        version: &s.version,
    })
}

fn stats_json(s: &Stats) -> String {
    to_json(&StatsJson {
        datagrams_in: s.datagrams_in,
        bytes_in: s.bytes_in,
        datagrams_out: s.datagrams_out,
        bytes_out: s.bytes_out,
        malformed_in: s.malformed_in,
        messages_accepted: s.messages_accepted,
        messages_delivered: s.messages_delivered,
        naks_sent: s.naks_sent,
        naks_received: s.naks_received,
        retransmits: s.retransmits,
        tail_probes: s.tail_probes,
        window_decreases: s.window_decreases,
        dropped_other_cluster: s.dropped_other_cluster,
        dropped_no_group: s.dropped_no_group,
        dropped_duplicate: s.dropped_duplicate,
        dropped_beyond_window: s.dropped_beyond_window,
        dropped_before_base: s.dropped_before_base,
        sessions_dropped_slow: s.sessions_dropped_slow,
        refused_unauthentic: s.refused_unauthentic,
        refused_replayed: s.refused_replayed,
        groups: s
            .groups
            .iter()
            .map(|g| GroupStatsJson {
                group: &g.name,
                view: g.view,
                sequencer: g.sequencer,
                queued: g.queued,
                in_flight_bytes: g.in_flight_bytes,
                window_bytes: g.window_bytes,
                window_cap_bytes: g.window_cap_bytes,
            })
            .collect(),
    })
}

/// The host-wide counters, one `key  value` row each.
fn stats_rows(s: &Stats) -> Vec<(&'static str, String)> {
    vec![
        (
            "datagrams in",
            format!("{} ({} bytes)", s.datagrams_in, s.bytes_in),
        ),
        (
            "datagrams out",
            format!("{} ({} bytes)", s.datagrams_out, s.bytes_out),
        ),
        ("malformed in", s.malformed_in.to_string()),
        ("messages accepted", s.messages_accepted.to_string()),
        ("messages delivered", s.messages_delivered.to_string()),
        ("naks sent", s.naks_sent.to_string()),
        ("naks received", s.naks_received.to_string()),
        ("retransmits", s.retransmits.to_string()),
        ("tail probes", s.tail_probes.to_string()),
        ("window decreases", s.window_decreases.to_string()),
        ("drops", drops_line(s)),
        (
            "refused",
            format!(
                "unauthentic {}, replayed {}",
                s.refused_unauthentic, s.refused_replayed
            ),
        ),
    ]
}

/// The drop counters on one row, each named (most are 0, and one row
/// keeps the counters above readable).
fn drops_line(s: &Stats) -> String {
    [
        ("other cluster", s.dropped_other_cluster),
        ("no group", s.dropped_no_group),
        ("duplicate", s.dropped_duplicate),
        ("beyond window", s.dropped_beyond_window),
        ("before base", s.dropped_before_base),
        ("slow sessions", s.sessions_dropped_slow),
    ]
    .map(|(what, n)| format!("{what} {n}"))
    .join(", ")
}

/// One line per group: its view, whether we sequence it, our send queue
/// and flow window.
fn group_stats_table(groups: &[GroupStats]) -> Vec<String> {
    let mut rows = vec![[
        "GROUP",
        "VIEW",
        "SEQUENCER",
        "QUEUED",
        "IN-FLIGHT B",
        "WINDOW B",
        "CAP B",
    ]
    .map(String::from)];
    for g in groups {
        rows.push([
            g.name.clone(),
            g.view.to_string(),
            if g.sequencer { "yes" } else { "no" }.to_owned(),
            g.queued.to_string(),
            g.in_flight_bytes.to_string(),
            g.window_bytes.to_string(),
            g.window_cap_bytes.to_string(),
        ]);
    }
    table(&rows)
}

fn group_json(g: &GroupInfo) -> String {
    to_json(&GroupJson {
        group: &g.name,
        address: &g.address,
        view: g.view,
        members: g.members,
        local: g.local,
    })
}

fn view_line(v: &ViewInfo) -> String {
    format!(
        "view {} {} sequencer={} members={}",
        v.group,
        v.view,
        v.sequencer,
        v.members.join(",")
    )
}

/// `chat #42 host-b:listen-77: hello`; control characters escaped so that
/// one message stays one line, and binary payloads shown as base64.
fn message_line(m: &Message) -> String {
    match std::str::from_utf8(&m.payload) {
        Ok(text) if text.chars().any(char::is_control) => {
            format!(
                "{} #{} {}: {}",
                m.group,
                m.seq,
                m.sender,
                text.escape_debug()
            )
        }
        Ok(text) => format!("{} #{} {}: {}", m.group, m.seq, m.sender, text),
        Err(_) => format!(
            "{} #{} {} (base64): {}",
            m.group,
            m.seq,
            m.sender,
            base64::engine::general_purpose::STANDARD.encode(&m.payload)
        ),
    }
}

/// `key   value` rows with the values aligned.
fn key_values(rows: &[(&str, String)]) -> Vec<String> {
    let width = rows.iter().map(|(k, _)| k.len()).max().unwrap_or(0);
    rows.iter()
        .map(|(k, v)| format!("{k:width$}  {v}").trim_end().to_owned())
        .collect()
}

fn groups_table(groups: &[GroupInfo]) -> Vec<String> {
    let mut rows = vec![["GROUP", "ADDRESS", "VIEW", "MEMBERS", "LOCAL"].map(String::from)];
    for g in groups {
        rows.push([
            g.name.clone(),
            g.address.clone(),
            g.view.to_string(),
            g.members.to_string(),
            if g.local { "yes" } else { "no" }.to_owned(),
        ]);
    }
    table(&rows)
}

/// Rows of cells in left-aligned columns two spaces apart.
fn table<const N: usize>(rows: &[[String; N]]) -> Vec<String> {
    let mut widths = [0usize; N];
    for row in rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    rows.iter()
        .map(|row| {
            let cells: Vec<String> = row
                .iter()
                .zip(widths)
                .map(|(cell, w)| format!("{cell:w$}"))
                .collect();
            cells.join("  ").trim_end().to_owned()
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use chorus::Order;

    fn msg(payload: &[u8]) -> Message {
        Message {
            group: "chat".into(),
            view: 3,
            sender: "host-b:listen-77".into(),
            order: Order::Fifo,
            seq: 42,
            payload: payload.to_vec(),
        }
    }

    #[test]
    fn human_message_lines_stay_one_line() {
        assert_eq!(
            message_line(&msg(b"hello")),
            "chat #42 host-b:listen-77: hello"
        );
        assert_eq!(
            message_line(&msg(b"a\nb")),
            "chat #42 host-b:listen-77: a\\nb"
        );
        assert_eq!(
            message_line(&msg(&[0xff, 0])),
            "chat #42 host-b:listen-77 (base64): /wA="
        );
    }

    #[test]
    fn human_view_line_lists_members() {
        let v = ViewInfo {
            group: "chat".into(),
            view: 3,
            members: vec!["host-a:worker-1".into(), "host-b:listen-77".into()],
            sequencer: "host-a".into(),
        };
        assert_eq!(
            view_line(&v),
            "view chat 3 sequencer=host-a members=host-a:worker-1,host-b:listen-77"
        );
    }

    #[test]
    fn groups_table_aligns_columns() {
        let g = |name: &str, local| GroupInfo {
            name: name.into(),
            address: "239.192.0.10:7410".into(),
            view: 12,
            members: 3,
            local,
        };
        assert_eq!(
            groups_table(&[g("chat", true), g("a-longer-name", false)]),
            [
                "GROUP          ADDRESS            VIEW  MEMBERS  LOCAL",
                "chat           239.192.0.10:7410  12    3        yes",
                "a-longer-name  239.192.0.10:7410  12    3        no",
            ]
        );
    }

    #[test]
    fn stats_print_counters_then_a_table_of_groups() {
        let s = Stats {
            datagrams_in: 10,
            bytes_in: 1000,
            retransmits: 2,
            dropped_duplicate: 5,
            sessions_dropped_slow: 1,
            refused_replayed: 4,
            groups: vec![GroupStats {
                name: "chat".into(),
                view: 4,
                sequencer: true,
                queued: 3,
                in_flight_bytes: 300,
                window_bytes: 65536,
                window_cap_bytes: 131072,
            }],
            ..Stats::default()
        };
        let lines = key_values(&stats_rows(&s));
        assert_eq!(lines[0], "datagrams in        10 (1000 bytes)");
        assert_eq!(lines[7], "retransmits         2");
        assert_eq!(
            lines[10],
            "drops               other cluster 0, no group 0, duplicate 5, beyond window 0, \
             before base 0, slow sessions 1"
        );
        assert_eq!(lines[11], "refused             unauthentic 0, replayed 4");
        assert_eq!(
            group_stats_table(&s.groups),
            [
                "GROUP  VIEW  SEQUENCER  QUEUED  IN-FLIGHT B  WINDOW B  CAP B",
                "chat   4     yes        3       300          65536     131072",
            ]
        );
        let json: serde_json::Value = serde_json::from_str(&stats_json(&s)).expect("json");
        assert_eq!(json["retransmits"], 2);
        assert_eq!(json["dropped_duplicate"], 5);
        assert_eq!(json["dropped_other_cluster"], 0);
        assert_eq!(json["sessions_dropped_slow"], 1);
        assert_eq!(json["groups"][0]["group"], "chat");
        assert_eq!(json["groups"][0]["window_cap_bytes"], 131072);
    }

    #[test]
    fn message_json_escapes_and_orders_keys() {
        assert_eq!(
            message_json(&msg(b"say \"hi\"")),
            r#"{"event":"message","group":"chat","view":3,"sender":"host-b:listen-77","order":"fifo","seq":42,"data":"say \"hi\""}"#
        );
    }
}
