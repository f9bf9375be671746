//! Each checker must fire on a hand-made history that breaks its property,
//! and stay quiet on a correct one.

use super::*;

fn work() -> Vec<SenderWork> {
    vec![
        SenderWork {
            label: "s1".into(),
            payloads: vec!["s1-000001".into(), "s1-000002".into(), "s1-000003".into()],
        },
        SenderWork {
            label: "s2".into(),
            payloads: vec!["s2-000001".into(), "s2-000002".into()],
        },
    ]
}

/// A correct total order interleaving both senders, seq 10, 11, ...
fn good_order() -> Vec<(&'static str, &'static str)> {
    vec![
        ("n1:s1", "s1-000001"),
        ("n2:s2", "s2-000001"),
        ("n1:s1", "s1-000002"),
        ("n1:s1", "s1-000003"),
        ("n2:s2", "s2-000002"),
    ]
}

fn trace(listener: &str, order: &[(&str, &str)], first_seq: u64) -> Trace {
    Trace {
        listener: listener.into(),
        deliveries: order
            .iter()
            .enumerate()
            .map(|(i, (sender, data))| Delivery {
                sender: (*sender).into(),
                data: (*data).into(),
                seq: first_seq + i as u64,
            })
            .collect(),
    }
}

fn good_traces() -> Vec<Trace> {
    let order = good_order();
    vec![
        trace("l1", &order, 10),
        trace("l2", &order, 10),
        trace("l3", &order, 10),
    ]
}

#[test]
fn correct_history_passes_every_checker() {
    let traces = good_traces();
    assert_eq!(check_all(&traces, &work()), Vec::new());
    assert_all(&traces, &work());
}

#[test]
fn agreement_fires_on_different_orders() {
    let mut traces = good_traces();
    let mut order = good_order();
    order.swap(0, 1);
    traces[2] = trace("l3", &order, 10);
    let v = total_order_agreement(&traces);
    assert_eq!(v.len(), 1, "{v:?}");
    assert!(matches!(&v[0], Violation::Disagreement { other, index: 0, .. } if other == "l3"));
}

#[test]
fn agreement_fires_on_a_shorter_sequence() {
    let mut traces = good_traces();
    traces[1].deliveries.pop();
    let v = total_order_agreement(&traces);
    assert!(
        matches!(
            &v[..],
            [Violation::Disagreement {
                index: 4,
                found: None,
                ..
            }]
        ),
        "{v:?}"
    );
}

#[test]
fn agreement_fires_on_different_sender_names() {
    let mut traces = good_traces();
    traces[1].deliveries[2].sender = "n3:s1".into();
    assert_eq!(total_order_agreement(&traces).len(), 1);
}

#[test]
fn loss_fires_on_a_missing_message() {
    let mut traces = good_traces();
    traces[1].deliveries.remove(3);
    let v = no_loss(&traces, &work());
    assert!(
        matches!(&v[..], [Violation::Lost { listener, missing: 1, examples }]
            if listener == "l2" && examples == &["s1-000003".to_owned()]),
        "{v:?}"
    );
}

#[test]
fn loss_fires_on_a_message_nobody_sent() {
    let mut traces = good_traces();
    traces[0].deliveries.push(Delivery {
        sender: "n1:s1".into(),
        data: "s1-000004".into(),
        seq: 99,
    });
    let v = no_loss(&traces, &work());
    assert!(
        matches!(&v[..], [Violation::Spurious { data, .. }] if data == "s1-000004"),
        "{v:?}"
    );
}

#[test]
fn duplicates_fire_on_a_repeated_payload() {
    let mut order = good_order();
    order.push(("n2:s2", "s2-000001"));
    let traces = vec![trace("l1", &order, 1)];
    let v = no_duplicates(&traces);
    assert!(
        matches!(
            &v[..],
            [Violation::Duplicate {
                positions: (1, 5),
                ..
            }]
        ),
        "{v:?}"
    );
    // The duplicate does not hide from the loss checker either: nothing is lost.
    assert!(no_loss(&traces, &work()).is_empty());
}

#[test]
fn fifo_fires_when_a_sender_is_reordered_everywhere() {
    // All listeners agree, seqs are fine, but s1's 2nd and 3rd are swapped.
    let mut order = good_order();
    order.swap(2, 3);
    let traces = vec![trace("l1", &order, 1), trace("l2", &order, 1)];
    assert!(total_order_agreement(&traces).is_empty());
    assert!(seq_consistent(&traces).is_empty());
    let v = fifo_per_sender(&traces, &work());
    assert_eq!(v.len(), 2, "{v:?}");
    assert!(
        matches!(&v[0], Violation::FifoBroken { sender, delivered_first, delivered_after, .. }
        if sender == "s1" && delivered_first == "s1-000003" && delivered_after == "s1-000002")
    );
}

#[test]
fn seq_fires_when_not_increasing() {
    let order = good_order();
    let mut traces = vec![trace("l1", &order, 1), trace("l2", &order, 1)];
    for t in &mut traces {
        t.deliveries[3].seq = 2; // ..., 3, 2, 5
    }
    assert!(total_order_agreement(&traces).is_empty());
    let v = seq_consistent(&traces);
    assert_eq!(v.len(), 2, "{v:?}");
    assert!(matches!(
        &v[0],
        Violation::SeqNotIncreasing {
            index: 3,
            previous: 3,
            seq: 2,
            ..
        }
    ));
}

#[test]
fn seq_fires_on_equal_consecutive_seqs() {
    let order = good_order();
    let mut traces = vec![trace("l1", &order, 1)];
    traces[0].deliveries[1].seq = 1;
    assert!(matches!(
        &seq_consistent(&traces)[..],
        [Violation::SeqNotIncreasing { index: 1, .. }]
    ));
}

#[test]
fn seq_fires_when_listeners_disagree_on_a_messages_seq() {
    let order = good_order();
    // Both strictly increasing, but l2 numbers everything one higher.
    let traces = vec![trace("l1", &order, 1), trace("l2", &order, 2)];
    let v = seq_consistent(&traces);
    assert_eq!(v.len(), order.len(), "{v:?}");
    assert!(matches!(
        &v[0],
        Violation::SeqMismatch {
            first: (_, 1),
            other: (_, 2),
            ..
        }
    ));
}

#[test]
fn empty_inputs_hold_trivially() {
    assert!(check_all(&[], &[]).is_empty());
}

#[test]
#[should_panic(expected = "delivery violations")]
fn assert_all_panics_on_violation() {
    let mut traces = good_traces();
    traces[0].deliveries.clear();
    assert_all(&traces, &work());
}
