//! The one place that states the order in which a driver drains a
//! [`Host`]'s outputs. chorusd's IO thread and the simulator both call
//! [`drain`], so they cannot drift apart.

use super::{Host, MulticastChange, SessionId};
use crate::order::sequencer::SequencerInput;
use crate::time::Instant;
use crate::wire::app::FromDaemon;
use crate::wire::directory::ToDirectory;
use std::net::SocketAddrV4;

/// Where a driver sends what the host produced.
pub trait HostSink {
    /// Join or leave a multicast group (done before anything is sent to it).
    fn multicast(&mut self, change: MulticastChange);
    /// Send one datagram from the data socket.
    fn transmit(&mut self, dest: SocketAddrV4, bytes: &[u8]);
    /// Hand an input to this node's sequencer.
    fn sequencer(&mut self, input: SequencerInput);
    /// Send a frame to the directory.
    fn directory(&mut self, frame: ToDirectory);
    /// Send a reply or event to a session.
    fn app(&mut self, session: SessionId, event: FromDaemon);
    /// Close a session.
    fn close_session(&mut self, session: SessionId);
}

/// Drains every output of `host` into `sink`, in the documented order.
/// `buf` is the caller's datagram buffer, reused across calls.
pub fn drain(host: &mut Host, now: Instant, buf: &mut Vec<u8>, sink: &mut impl HostSink) {
    while let Some(c) = host.poll_multicast_change() {
        sink.multicast(c);
    }
    while let Some(dest) = host.poll_transmit(buf, now) {
        sink.transmit(dest, buf);
    }
    while let Some(i) = host.poll_sequencer() {
        sink.sequencer(i);
    }
    while let Some(f) = host.poll_directory() {
        sink.directory(f);
    }
    while let Some((s, e)) = host.poll_app() {
        sink.app(s, e);
    }
    while let Some(s) = host.poll_close_session() {
        sink.close_session(s);
    }
}
