//! Turns the simulator's [`Planted`] switches on in a host, through the
//! host's test-only `plant` hook.

use crate::plan::Planted;
use chorus_proto::host::planted::Planted as HostPlanted;
use chorus_proto::host::Host;

/// Plants the chosen bugs in `host` (nothing by default).
pub fn apply(host: &mut Host, p: Planted) {
    let host_bugs = Planted {
        no_replay_window: false,
        ..p
    };
    if host_bugs != Planted::default() {
        host.plant(HostPlanted {
            no_retransmit: p.no_retransmit,
            no_duplicate_suppression: p.no_duplicate_suppression,
            retransmit_storm: p.retransmit_storm,
            silent_separation: p.silent_separation,
        });
    }
}
