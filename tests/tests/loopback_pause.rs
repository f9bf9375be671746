//! A daemon stopped past its lease (`kill -STOP`, then `-CONT`), on
//! loopback with the real binaries: the others go on without it; when it
//! runs again its listener is told it was separated (a `separated` line),
//! then sees a new view with everyone, and never a hole: in every view it
//! installed it delivered a stretch of what the others delivered there
//! with nothing skipped, all of it in the views it shares with them.

#![allow(clippy::unwrap_used)] // tests may unwrap: a panic is the failure report

use std::collections::BTreeMap;
use std::process::Command;
use std::time::{Duration, Instant};

use chorus_tests::listener::{Event, Listener, Seen};
use chorus_tests::loopback::{LoopbackCluster, LEASE_MS};
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

fn signal(pid: u32, sig: Signal) {
    kill(Pid::from_raw(i32::try_from(pid).unwrap()), sig).unwrap();
}

/// Sends `messages` from a `chorusctl send` on `cmd`'s node; must succeed.
fn send(mut cmd: Command, group: &str, name: &str, messages: &[String]) {
    cmd.args(["send", group, "--name", name]);
    cmd.args(messages);
    let out = cmd.output().unwrap();
    assert!(out.status.success(), "send failed: {out:?}");
}

fn batch(prefix: &str, n: usize) -> Vec<String> {
    (0..n).map(|i| format!("{prefix}-{i}")).collect()
}

/// Per view, the (seq, data) a listener delivered in it.
fn by_view(seen: &Seen) -> BTreeMap<u64, Vec<(u64, String)>> {
    let mut out: BTreeMap<u64, Vec<(u64, String)>> = BTreeMap::new();
    for m in seen.messages() {
        out.entry(m.view)
            .or_default()
            .push((m.seq, m.data.clone().unwrap_or_default()));
    }
    out
}

#[test]
fn a_daemon_stopped_past_its_lease_is_separated_then_admitted_again_without_a_hole() {
    let cluster =
        LoopbackCluster::start("pause_past_lease", "chat", 3, Duration::from_secs(90)).unwrap();
    let group = cluster.group.name.clone();
    let listeners: Vec<Listener> = (1..=3)
        .map(|k| cluster.listen(k, &format!("l{k}")).unwrap())
        .collect();
    let all: Vec<String> = (1..=3)
        .map(|k| cluster.node(k).member(&format!("l{k}")))
        .collect();
    for l in &listeners {
        l.wait_view_with(&all, Duration::from_secs(15)).unwrap();
    }
    send(
        cluster.node(1).chorusctl(),
        &group,
        "s",
        &batch("before", 20),
    );
    for l in &listeners {
        l.wait_messages(20, Duration::from_secs(15)).unwrap();
    }

    // Node 3's daemon stops for three leases; the others see a view
    // without its member, and go on sending.
    let paused = cluster.node(3).process().pid();
    signal(paused, Signal::SIGSTOP);
    let stopped_at = Instant::now();
    struct Resume(u32);
    impl Drop for Resume {
        fn drop(&mut self) {
            let _ = kill(
                Pid::from_raw(i32::try_from(self.0).unwrap_or(0)),
                Signal::SIGCONT,
            );
        }
    }
    let resume = Resume(paused);
    let without = listeners[0]
        .wait_until("a view without l3", Duration::from_secs(15), |seen| {
            let v = seen.latest_view()?;
            (!v.members.contains(&all[2])).then(|| v.clone())
        })
        .unwrap();
    let view_without_after = stopped_at.elapsed();
    send(
        cluster.node(1).chorusctl(),
        &group,
        "s",
        &batch("while", 20),
    );
    listeners[1]
        .wait_messages(40, Duration::from_secs(15))
        .unwrap();
    let stop_for = Duration::from_millis(3 * LEASE_MS);
    if let Some(left) = stop_for.checked_sub(stopped_at.elapsed()) {
        std::thread::sleep(left); // the fault itself: the daemon stays stopped
    }
    drop(resume);
    let continued_at = Instant::now();

    // l3 is told it was separated, then sees a view with everyone again.
    let separated = listeners[2]
        .wait_until("the separation", Duration::from_secs(15), |seen| {
            seen.events.iter().find_map(|e| match e {
                Event::Separated(s) => Some(s.clone()),
                _ => None,
            })
        })
        .unwrap();
    assert_eq!(separated.group, group);
    assert!(separated.rejoining, "{separated:?}");
    assert!(
        separated.view < without.view,
        "{separated:?} vs {without:?}"
    );
    let back = listeners[2]
        .wait_until(
            "a view with everyone after the separation",
            Duration::from_secs(20),
            |seen| {
                let after = seen
                    .events
                    .iter()
                    .position(|e| matches!(e, Event::Separated(_)))?;
                seen.events[after..].iter().find_map(|e| match e {
                    Event::View(v) if all.iter().all(|m| v.members.contains(m)) => Some(v.clone()),
                    _ => None,
                })
            },
        )
        .unwrap();
    assert!(back.view > without.view, "{back:?}");
    let back_after = continued_at.elapsed();
    for l in &listeners[..2] {
        l.wait_view_with(&all, Duration::from_secs(15)).unwrap();
    }

    send(
        cluster.node(2).chorusctl(),
        &group,
        "t",
        &batch("after", 20),
    );
    for l in &listeners {
        l.wait_until("the messages sent after", Duration::from_secs(15), |seen| {
            (seen
                .messages()
                .filter(|m| m.data.as_deref().is_some_and(|d| d.starts_with("after-")))
                .count()
                == 20)
                .then_some(())
        })
        .unwrap();
    }

    // No hole: in every view l3 installed, what it delivered is a stretch
    // of l1's deliveries there, from the view's first on, with nothing
    // skipped; and all of it in the views after its return.
    let reference = by_view(&listeners[0].snapshot());
    let seen3 = listeners[2].snapshot();
    for (view, got) in by_view(&seen3) {
        let want = reference.get(&view).cloned().unwrap_or_default();
        assert!(
            want.starts_with(&got),
            "view {view}: l3 delivered {got:?}, l1 {want:?}"
        );
        if view >= back.view {
            assert_eq!(got, want, "view {view} after l3's return");
        }
    }
    // Nothing is delivered between the separation and the view it ends
    // with: the order of l3's output is views, messages, separated, view.
    let after = seen3
        .events
        .iter()
        .position(|e| matches!(e, Event::Separated(_)))
        .unwrap();
    assert!(
        matches!(seen3.events.get(after + 1), Some(Event::View(_))),
        "{:?}",
        &seen3.events[after..(after + 3).min(seen3.events.len())]
    );
    for e in &seen3.events[after.saturating_sub(1)..(after + 2).min(seen3.events.len())] {
        eprintln!("l3: {e:?}");
    }
    eprintln!(
        "pause timing: the others' view without l3 {} ms after SIGSTOP; l3 back in a view with everyone {} ms after SIGCONT",
        view_without_after.as_millis(),
        back_after.as_millis()
    );
}
