//! Local apps (sessions) and the members they joined.

use crate::ids::GroupId;

/// A connection from a local app, numbered by the edge.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct SessionId(pub u64);

/// Who the app runs as (from SO_PEERCRED), for the groups' allow lists.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Credentials {
    pub user: String,
    pub unix_groups: Vec<String>,
}

#[derive(Debug)]
pub(super) struct Session {
    pub creds: Credentials,
    pub members: Vec<crate::ids::MemberId>,
    /// Groups whose member this node dropped without the app asking, and
    /// why: told to the app when it sends there, until it joins again.
    pub dropped: Vec<(String, String)>,
}

impl Session {
    pub fn new(creds: Credentials) -> Self {
        Session {
            creds,
            members: Vec::new(),
            dropped: Vec::new(),
        }
    }

    /// Why this session's member of `group` was dropped, if it was.
    pub fn dropped_from(&self, group: &str) -> Option<&str> {
        self.dropped
            .iter()
            .rev()
            .find(|(g, _)| g == group)
            .map(|(_, why)| why.as_str())
    }
}

/// Most drop reasons a session keeps (the oldest go first).
pub(super) const DROPPED_MAX: usize = 16;

/// A member: one session joined to one group under a name.
#[derive(Debug)]
pub(super) struct Member {
    pub session: SessionId,
    pub group_name: String,
    /// Known once a view containing the member arrived.
    pub group: Option<GroupId>,
    /// Shared by every message the member sends (no copy each).
    pub name: std::sync::Arc<str>,
    /// In an installed view: receives deliveries and may send.
    pub active: bool,
    pub join_request: Option<u32>,
    /// The join waits for this node to be registered: its Join frame goes
    /// to the directory at the next Welcome (see `host::waits`).
    pub join_unsent: bool,
    pub leave_request: Option<u32>,
    /// Joining again, unasked: the directory declared this node dead and
    /// it registered again under a new id. Until the new view, sends are
    /// refused with that said.
    pub rejoining: bool,
    /// The last view its app was told: a membership that ends unasked
    /// says which (`FromDaemon::Separated`).
    pub view: Option<crate::ids::ViewId>,
}

impl Member {
    pub fn new(session: SessionId, group_name: String, name: String, join_request: u32) -> Self {
        Member {
            session,
            group_name,
            group: None,
            name: name.into(),
            active: false,
            join_request: Some(join_request),
            join_unsent: false,
            leave_request: None,
            rejoining: false,
            view: None,
        }
    }
}
