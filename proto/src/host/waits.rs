//! Requests that wait on the directory, and how long they may.
//!
//! A join, a leave or a group listing needs the directory's answer. Without
//! a bound, an app's request hangs for as long as the directory does not
//! answer: a directory that is frozen (SIGSTOP, a stalled host) keeps its
//! TCP link open, so nothing on this side notices. And a join made while
//! this node is still registering (a new directory answers the Hello of a
//! freshly started daemon only when its grace period ends) would be refused
//! outright although it could be served a moment later.
//!
//! So, once the edge sets a bound ([`Host::set_directory_wait`]; two of the
//! directory's leases when that is longer): a join or
//! a listing made while this node is not registered is queued and sent as
//! soon as it is welcomed; every such request, sent or queued, fails with
//! `Unavailable` when the directory has not answered it within the bound.
//! A leave that times out is finished here (the app's member is gone from
//! this node) and reported as failed; the directory, once it answers
//! again, is told by the ghost check (a view listing a member no app here
//! holds makes the host leave it).
//!
//! Without a bound (the default, and what the simulator runs) requests
//! wait as long as the link is up and fail at once while it is down.

use super::session::SessionId;
use super::timers::Timer;
use super::Host;
use crate::ids::MemberId;
use crate::time::{Duration, Instant};
use crate::wire::app::{ErrorCode, FromDaemon};
use crate::wire::directory::ToDirectory;
use std::collections::BTreeMap;

/// A request waiting on the directory.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(super) enum Waiting {
    /// A member's join (queued or sent).
    Join(MemberId),
    /// A member's leave (sent).
    Leave(MemberId),
    /// A group listing, by the host's own request number.
    List(u32),
}

/// The bound and every request's deadline.
#[derive(Debug, Default)]
pub(super) struct DirectoryWaits {
    bound: Option<Duration>,
    /// The lease the directory gave this node (from its Welcome): requests
    /// wait at least two, so that one held through a restarted directory's
    /// grace period (one lease) is not failed while it is being served.
    lease: Option<Duration>,
    deadlines: BTreeMap<Waiting, Instant>,
    /// Listings asked while unregistered: host request number, session and
    /// the app's request number. Sent when the node is welcomed.
    queued_lists: Vec<(u32, SessionId, u32)>,
}

impl DirectoryWaits {
    /// The earliest deadline.
    fn next(&self) -> Option<Instant> {
        self.deadlines.values().min().copied()
    }
}

impl Host {
    /// Bounds how long a request that needs the directory (join, leave,
    /// listing the groups) waits for its answer, or for this node to be
    /// registered, before it fails with `Unavailable` (see this module).
    /// `None` (the default): no bound, and no queueing while unregistered.
    pub fn set_directory_wait(&mut self, bound: Option<Duration>) {
        self.waits.bound = bound;
    }

    /// How long a request may wait on the directory: the bound set by
    /// [`Host::set_directory_wait`], or two of the directory's leases when
    /// that is longer.
    pub fn directory_wait(&self) -> Option<Duration> {
        let bound = self.waits.bound?;
        let leases = self
            .waits
            .lease
            .map_or(Duration::ZERO, |l| Duration::from_micros(l.as_micros() * 2));
        Some(bound.max(leases))
    }

    /// The directory's Welcome said its lease.
    pub(super) fn note_lease(&mut self, lease: Duration) {
        self.waits.lease = Some(lease);
    }

    /// True when requests made while unregistered are queued rather than
    /// refused.
    pub(super) fn queues_while_unregistered(&self) -> bool {
        self.waits.bound.is_some()
    }

    /// Starts the clock on `what`, if there is a bound.
    pub(super) fn start_wait(&mut self, now: Instant, what: Waiting) {
        let Some(bound) = self.directory_wait() else {
            return;
        };
        let at = now + bound;
        self.waits.deadlines.insert(what, at);
        self.timers.set_earliest(Timer::DirectoryWait, at);
    }

    /// Queues a listing until this node is registered.
    pub(super) fn queue_list(&mut self, now: Instant, session: SessionId, request: u32) {
        let id = self.next_list_id();
        self.waits.queued_lists.push((id, session, request));
        self.start_wait(now, Waiting::List(id));
    }

    /// Sends what was queued while unregistered: the joins and listings.
    /// Called once the node is welcomed (after a re-registration under a
    /// new id has sent its own joins again).
    pub(super) fn send_queued(&mut self) {
        let queued: Vec<MemberId> = self
            .members
            .iter()
            .filter(|(_, m)| m.join_unsent)
            .map(|(id, _)| *id)
            .collect();
        for id in queued {
            let Some(m) = self.members.get_mut(&id) else {
                continue;
            };
            m.join_unsent = false;
            let (group, name, session) = (m.group_name.clone(), m.name.to_string(), m.session);
            let Some(s) = self.sessions.get(&session) else {
                continue;
            };
            self.out_dir.push_back(ToDirectory::Join {
                group,
                member: id,
                member_name: name,
                user: s.creds.user.clone(),
                unix_groups: s.creds.unix_groups.clone(),
            });
        }
        for (id, session, request) in std::mem::take(&mut self.waits.queued_lists) {
            self.pending_lists.insert(id, (session, request));
            self.out_dir
                .push_back(ToDirectory::ListGroups { request: id });
        }
    }

    /// A session went away: its queued listings with it.
    pub(super) fn forget_queued_lists(&mut self, session: SessionId) {
        self.waits.queued_lists.retain(|(_, s, _)| *s != session);
    }

    /// Fails every request whose deadline passed. Called from
    /// `handle_timeout`.
    pub(super) fn expire_waits(&mut self, now: Instant) {
        if !self.timers.take_due(Timer::DirectoryWait, now) {
            return;
        }
        let due: Vec<Waiting> = self
            .waits
            .deadlines
            .iter()
            .filter(|(_, at)| **at <= now)
            .map(|(w, _)| *w)
            .collect();
        for w in due {
            self.waits.deadlines.remove(&w);
            self.expire(w);
        }
        if let Some(at) = self.waits.next() {
            self.timers.set_earliest(Timer::DirectoryWait, at);
        }
    }

    /// How the bound reads in a message: "5 s", "1500 ms".
    fn bound_text(&self) -> String {
        let ms = self.directory_wait().map_or(0, Duration::as_millis);
        if ms.is_multiple_of(1000) {
            format!("{} s", ms / 1000)
        } else {
            format!("{ms} ms")
        }
    }

    fn expire(&mut self, w: Waiting) {
        let bound = self.bound_text();
        match w {
            Waiting::Join(id) => {
                let Some(m) = self.members.get(&id) else {
                    return;
                };
                let Some(req) = m.join_request else {
                    return;
                };
                let message = if m.join_unsent {
                    format!(
                        "directory unreachable: this node did not get registered with the \
                         directory within {bound} (is chorus-directory running and reachable?)"
                    )
                } else {
                    format!("directory unreachable: the directory did not answer the join within {bound}")
                };
                log::warn!(
                    "join of `{}` to group `{}`: {message}",
                    m.name,
                    m.group_name
                );
                if let Some(m) = self.members.remove(&id) {
                    self.reply_err(m.session, req, ErrorCode::Unavailable, &message);
                    self.forget_member(id, m.session);
                }
            }
            Waiting::Leave(id) => {
                let Some(m) = self.members.get_mut(&id) else {
                    return;
                };
                let Some(req) = m.leave_request.take() else {
                    return;
                };
                let message = format!(
                    "directory unreachable: the directory did not confirm the leave within \
                     {bound}; the member no longer receives here, and the directory is told \
                     again once it answers"
                );
                log::warn!(
                    "leave of `{}` from group `{}`: {message}",
                    m.name,
                    m.group_name
                );
                let session = m.session;
                self.reply_err(session, req, ErrorCode::Unavailable, &message);
                self.finish_leave(id);
            }
            Waiting::List(id) => {
                let queued = self
                    .waits
                    .queued_lists
                    .iter()
                    .position(|(l, _, _)| *l == id);
                let (session, req, message) = if let Some(at) = queued {
                    let (_, session, req) = self.waits.queued_lists.remove(at);
                    let message = format!(
                        "directory unreachable: this node did not get registered with the \
                         directory within {bound}"
                    );
                    (session, req, message)
                } else if let Some((session, req)) = self.pending_lists.remove(&id) {
                    let message = format!(
                        "directory unreachable: the directory did not answer within {bound}"
                    );
                    (session, req, message)
                } else {
                    return;
                };
                self.out_app.push_back((
                    session,
                    FromDaemon::Error {
                        request: req,
                        code: ErrorCode::Unavailable,
                        message,
                    },
                ));
            }
        }
    }
}
