//! The README's "Try it": `chorusd --dev`, then `chorusctl listen demo` and
//! `chorusctl send demo a b c` through `CHORUS_SOCKET`, nothing configured.

#![allow(clippy::unwrap_used)] // tests may unwrap: a panic is the failure report

use std::time::Duration;

use chorus_tests::dev::DevNode;
use chorus_tests::listener::Listener;
use chorus_tests::testenv::TestEnv;

#[test]
fn dev_mode_demo() {
    let env = TestEnv::new("dev_mode_demo", Duration::from_secs(120)).unwrap();
    let dev = DevNode::start(&env, Duration::from_secs(30)).unwrap();

    let mut cmd = dev.chorusctl();
    cmd.args(["listen", "demo", "--count", "3", "--json"]);
    let listener = Listener::spawn(&env, "listen-demo", cmd).unwrap();
    // Without --name the member is NODE:listen-PID (contract).
    let suffix = format!(":listen-{}", listener.process().pid());
    let view = listener
        .wait_until(
            "a view with this listener",
            Duration::from_secs(30),
            |seen| {
                let v = seen.latest_view()?;
                v.members
                    .iter()
                    .any(|m| m.ends_with(&suffix))
                    .then(|| v.clone())
            },
        )
        .unwrap();
    assert_eq!(view.group, "demo");

    let mut send = dev.chorusctl();
    send.args(["send", "demo", "a", "b", "c"]);
    let sender = env.spawn_simple("send-demo", send).unwrap();
    let status = sender.wait_timeout(Duration::from_secs(30)).unwrap();
    assert!(
        status.success(),
        "send exited {status}: {}",
        sender.log_tail(20)
    );

    let messages = listener.wait_messages(3, Duration::from_secs(30)).unwrap();
    let data: Vec<&str> = messages.iter().filter_map(|m| m.data.as_deref()).collect();
    assert_eq!(data, ["a", "b", "c"]);
    assert!(
        messages
            .iter()
            .all(|m| m.group == "demo" && m.order == "total"),
        "{messages:?}"
    );
    assert!(
        messages.windows(2).all(|w| w[0].seq < w[1].seq),
        "{messages:?}"
    );
    // --count 3: the listener ends by itself, successfully.
    let status = listener
        .process()
        .wait_timeout(Duration::from_secs(10))
        .unwrap();
    assert!(
        status.success(),
        "listen exited {status}: {}",
        listener.process().log_tail(20)
    );
    assert!(
        dev.process().try_wait().unwrap().is_none(),
        "chorusd --dev died"
    );
}
