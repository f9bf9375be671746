//! Integrity: a member is delivered only messages that an app sent to that
//! group and the host accepted, byte for byte as sent, and each at most once.

use super::{id_group, payload_id, payload_intact, MemberKey};
use std::collections::{BTreeMap, BTreeSet};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Status {
    /// Handed to the host; the reply is not in yet.
    Offered,
    Accepted,
    Refused,
}

/// What was sent and what each member got.
#[derive(Debug, Default)]
pub struct Integrity {
    sent: BTreeMap<u64, (usize, Status)>,
    delivered: BTreeMap<MemberKey, BTreeSet<u64>>,
}

impl Integrity {
    /// A message of `len` bytes is handed to a host.
    pub fn on_send(&mut self, id: u64, len: usize) {
        self.sent.insert(id, (len, Status::Offered));
    }

    /// The host's answer to a send.
    pub fn on_send_result(&mut self, id: u64, ok: bool) {
        if let Some((_, s)) = self.sent.get_mut(&id) {
            *s = if ok {
                Status::Accepted
            } else {
                Status::Refused
            };
        }
    }

    /// Ids accepted by a host.
    pub fn accepted(&self) -> impl Iterator<Item = u64> + '_ {
        self.sent
            .iter()
            .filter(|(_, (_, s))| *s == Status::Accepted)
            .map(|(id, _)| *id)
    }

    /// True if a host accepted `id`.
    pub fn is_accepted(&self, id: u64) -> bool {
        self.sent
            .get(&id)
            .is_some_and(|(_, s)| *s == Status::Accepted)
    }

    /// Number of messages accepted.
    pub fn accepted_count(&self) -> usize {
        self.accepted().count()
    }

    /// True if the member was delivered `id`.
    pub fn was_delivered(&self, m: MemberKey, id: u64) -> bool {
        self.delivered.get(&m).is_some_and(|d| d.contains(&id))
    }

    /// A delivery.
    pub fn on_deliver(&mut self, m: MemberKey, p: &[u8]) -> Result<(), String> {
        let id = payload_id(p)
            .ok_or_else(|| format!("{m} got a {}-byte payload that no app sent", p.len()))?;
        let Some(&(len, status)) = self.sent.get(&id) else {
            return Err(format!("{m} got message {id:#x} that no app sent"));
        };
        if status == Status::Refused {
            return Err(format!("{m} got message {id:#x} that its host refused"));
        }
        if id_group(id) != m.group {
            return Err(format!(
                "{m} got message {id:#x} sent to group {}",
                id_group(id)
            ));
        }
        if p.len() != len || !payload_intact(id, p) {
            return Err(format!(
                "{m} got message {id:#x} altered: {} bytes, {len} sent",
                p.len()
            ));
        }
        if !self.delivered.entry(m).or_default().insert(id) {
            return Err(format!("{m} got message {id:#x} twice"));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::check::{msg_id, payload};

    #[test]
    fn catches_duplicates_strangers_and_corruption() {
        let m = MemberKey {
            app: 1,
            group: 0,
            stint: 1,
        };
        let mut c = Integrity::default();
        let id = msg_id(2, 0, 1);
        assert!(c.on_deliver(m, &payload(id, 20)).is_err(), "never sent");
        c.on_send(id, 20);
        c.on_send_result(id, true);
        let mut bad = payload(id, 20);
        bad[12] ^= 1;
        assert!(c.on_deliver(m, &bad).is_err(), "corrupted");
        assert!(c.on_deliver(m, &payload(id, 20)).is_ok());
        assert!(c.on_deliver(m, &payload(id, 20)).is_err(), "twice");
    }
}
