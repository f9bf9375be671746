//! Raft storage: the log, the vote and the state machine.
//!
//! Everything lives in memory, and the vote, the log and the commit point
//! are also written to one small file (`raft-state.json` in `state_dir`,
//! replaced atomically) whenever they change. The log is tiny: a blank
//! entry and a [`Command::Lead`] per election, and the membership. Keeping
//! it on disk is what lets a restarted replica never vote twice in one term
//! (Raft's safety rests on that) and lets a whole cluster that restarts at
//! once find its membership again. The state machine is rebuilt from the
//! log by openraft on start (it re-applies up to the saved commit point),
//! so it needs no file of its own. Snapshots are never built (the policy is
//! `Never`, the log stays small), but one can be installed from a leader.

use super::types::{Applied, Command, Leadership, TypeConfig};
use openraft::storage::{LogFlushed, LogState, RaftLogStorage, RaftStateMachine, Snapshot};
use openraft::{
    AnyError, Entry, EntryPayload, LogId, OptionalSend, RaftLogReader, RaftSnapshotBuilder,
    SnapshotMeta, StorageError, StorageIOError, StoredMembership, Vote,
};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::fmt::Debug;
use std::io::{Cursor, Write};
use std::ops::RangeBounds;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};

/// Name of the state file under `state_dir`.
pub const STATE_FILE: &str = "raft-state.json";

type NodeId = u64;
type Node = openraft::BasicNode;

/// What is kept on disk.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
struct Durable {
    vote: Option<Vote<NodeId>>,
    committed: Option<LogId<NodeId>>,
    purged: Option<LogId<NodeId>>,
    log: BTreeMap<u64, Entry<TypeConfig>>,
}

#[derive(Debug)]
struct LogInner {
    durable: Durable,
    path: PathBuf,
}

impl LogInner {
    /// Writes the durable state to a temporary file, syncs it and renames
    /// it over the state file, so a crash leaves the old or the new one.
    fn save(&self) -> std::io::Result<()> {
        let tmp = self.path.with_extension("json.tmp");
        let bytes = serde_json::to_vec(&self.durable).map_err(std::io::Error::other)?;
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(&bytes)?;
        f.sync_all()?;
        std::fs::rename(&tmp, &self.path)?;
        if let Some(dir) = self.path.parent() {
            // The rename itself must reach the disk too.
            std::fs::File::open(dir)?.sync_all()?;
        }
        Ok(())
    }
}

/// Why the state file could not be used.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}: not a Raft state file of this version: {source}")]
    Corrupt {
        path: PathBuf,
        source: serde_json::Error,
    },
}

/// The log and vote, shared by the storage and its readers.
#[derive(Debug, Clone)]
pub struct LogStore {
    inner: Arc<Mutex<LogInner>>,
}

impl LogStore {
    /// Opens (or creates) the state in `dir`.
    pub fn open(dir: &Path) -> Result<LogStore, StoreError> {
        std::fs::create_dir_all(dir).map_err(|source| StoreError::Io {
            path: dir.to_owned(),
            source,
        })?;
        let path = dir.join(STATE_FILE);
        let durable = match std::fs::read(&path) {
            Ok(bytes) => serde_json::from_slice(&bytes).map_err(|source| StoreError::Corrupt {
                path: path.clone(),
                source,
            })?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Durable::default(),
            Err(source) => return Err(StoreError::Io { path, source }),
        };
        let inner = LogInner { durable, path };
        // Fail now, not at the first vote, if the directory is not writable.
        inner.save().map_err(|source| StoreError::Io {
            path: inner.path.clone(),
            source,
        })?;
        Ok(LogStore {
            inner: Arc::new(Mutex::new(inner)),
        })
    }

    fn lock(&self) -> MutexGuard<'_, LogInner> {
        // A panic while holding the lock leaves plain data behind; go on.
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }
}

fn write_err(e: std::io::Error) -> StorageError<NodeId> {
    StorageIOError::write_logs(AnyError::new(&e)).into()
}

impl RaftLogReader<TypeConfig> for LogStore {
    async fn try_get_log_entries<RB: RangeBounds<u64> + Clone + Debug + OptionalSend>(
        &mut self,
        range: RB,
    ) -> Result<Vec<Entry<TypeConfig>>, StorageError<NodeId>> {
        let inner = self.lock();
        Ok(inner
            .durable
            .log
            .range(range)
            .map(|(_, e)| e.clone())
            .collect())
    }
}

impl RaftLogStorage<TypeConfig> for LogStore {
    type LogReader = LogStore;

    async fn get_log_state(&mut self) -> Result<LogState<TypeConfig>, StorageError<NodeId>> {
        let inner = self.lock();
        let purged = inner.durable.purged;
        let last = inner
            .durable
            .log
            .values()
            .next_back()
            .map(|e| e.log_id)
            .or(purged);
        Ok(LogState {
            last_purged_log_id: purged,
            last_log_id: last,
        })
    }

    async fn get_log_reader(&mut self) -> Self::LogReader {
        self.clone()
    }

    async fn save_vote(&mut self, vote: &Vote<NodeId>) -> Result<(), StorageError<NodeId>> {
        let mut inner = self.lock();
        inner.durable.vote = Some(*vote);
        inner
            .save()
            .map_err(|e| StorageIOError::write_vote(AnyError::new(&e)).into())
    }

    async fn read_vote(&mut self) -> Result<Option<Vote<NodeId>>, StorageError<NodeId>> {
        Ok(self.lock().durable.vote)
    }

    async fn save_committed(
        &mut self,
        committed: Option<LogId<NodeId>>,
    ) -> Result<(), StorageError<NodeId>> {
        let mut inner = self.lock();
        inner.durable.committed = committed;
        inner.save().map_err(write_err)
    }

    async fn read_committed(&mut self) -> Result<Option<LogId<NodeId>>, StorageError<NodeId>> {
        Ok(self.lock().durable.committed)
    }

    async fn append<I>(
        &mut self,
        entries: I,
        callback: LogFlushed<TypeConfig>,
    ) -> Result<(), StorageError<NodeId>>
    where
        I: IntoIterator<Item = Entry<TypeConfig>> + OptionalSend,
        I::IntoIter: OptionalSend,
    {
        let result = {
            let mut inner = self.lock();
            for e in entries {
                inner.durable.log.insert(e.log_id.index, e);
            }
            inner.save()
        };
        match result {
            Ok(()) => {
                callback.log_io_completed(Ok(()));
                Ok(())
            }
            Err(e) => {
                let err = write_err(std::io::Error::new(e.kind(), e.to_string()));
                callback.log_io_completed(Err(e));
                Err(err)
            }
        }
    }

    async fn truncate(&mut self, log_id: LogId<NodeId>) -> Result<(), StorageError<NodeId>> {
        let mut inner = self.lock();
        inner.durable.log.retain(|i, _| *i < log_id.index);
        inner.save().map_err(write_err)
    }

    async fn purge(&mut self, log_id: LogId<NodeId>) -> Result<(), StorageError<NodeId>> {
        let mut inner = self.lock();
        inner.durable.log.retain(|i, _| *i > log_id.index);
        inner.durable.purged = Some(log_id);
        inner.save().map_err(write_err)
    }
}

/// The state machine, in memory: who leads (see [`Leadership`]).
#[derive(Debug, Clone, Default)]
pub struct StateMachine {
    inner: Arc<Mutex<SmInner>>,
}

#[derive(Debug, Default, Serialize, Deserialize)]
struct SmInner {
    applied: Option<LogId<NodeId>>,
    membership: StoredMembership<NodeId, Node>,
    leadership: Leadership,
}

impl StateMachine {
    fn lock(&self) -> MutexGuard<'_, SmInner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// What the applied entries say.
    pub fn leadership(&self) -> Leadership {
        self.lock().leadership.clone()
    }
}

fn sm_err(e: serde_json::Error) -> StorageError<NodeId> {
    StorageIOError::read_state_machine(AnyError::new(&e)).into()
}

impl RaftSnapshotBuilder<TypeConfig> for StateMachine {
    async fn build_snapshot(&mut self) -> Result<Snapshot<TypeConfig>, StorageError<NodeId>> {
        let inner = self.lock();
        let data = serde_json::to_vec(&*inner).map_err(sm_err)?;
        let meta = SnapshotMeta {
            last_log_id: inner.applied,
            last_membership: inner.membership.clone(),
            snapshot_id: format!("{:?}", inner.applied.map(|l| l.index)),
        };
        Ok(Snapshot {
            meta,
            snapshot: Box::new(Cursor::new(data)),
        })
    }
}

impl RaftStateMachine<TypeConfig> for StateMachine {
    type SnapshotBuilder = StateMachine;

    async fn applied_state(
        &mut self,
    ) -> Result<(Option<LogId<NodeId>>, StoredMembership<NodeId, Node>), StorageError<NodeId>> {
        let inner = self.lock();
        Ok((inner.applied, inner.membership.clone()))
    }

    async fn apply<I>(&mut self, entries: I) -> Result<Vec<Applied>, StorageError<NodeId>>
    where
        I: IntoIterator<Item = Entry<TypeConfig>> + OptionalSend,
        I::IntoIter: OptionalSend,
    {
        let mut inner = self.lock();
        let mut out = Vec::new();
        for e in entries {
            inner.applied = Some(e.log_id);
            match e.payload {
                EntryPayload::Blank => {}
                EntryPayload::Normal(Command::Lead { replica, term }) => {
                    inner.leadership.last = Some((replica, term));
                    inner.leadership.leads += 1;
                }
                EntryPayload::Normal(Command::Floors { node, group }) => {
                    let l = &mut inner.leadership;
                    l.node_floor = l.node_floor.max(node);
                    l.group_floor = l.group_floor.max(group);
                }
                EntryPayload::Membership(m) => {
                    inner.membership = StoredMembership::new(Some(e.log_id), m);
                }
            }
            out.push(Applied);
        }
        Ok(out)
    }

    async fn get_snapshot_builder(&mut self) -> Self::SnapshotBuilder {
        self.clone()
    }

    async fn begin_receiving_snapshot(
        &mut self,
    ) -> Result<Box<Cursor<Vec<u8>>>, StorageError<NodeId>> {
        Ok(Box::new(Cursor::new(Vec::new())))
    }

    async fn install_snapshot(
        &mut self,
        meta: &SnapshotMeta<NodeId, Node>,
        snapshot: Box<Cursor<Vec<u8>>>,
    ) -> Result<(), StorageError<NodeId>> {
        let mut restored: SmInner = serde_json::from_slice(snapshot.get_ref()).map_err(sm_err)?;
        restored.applied = meta.last_log_id;
        restored.membership = meta.last_membership.clone();
        *self.lock() = restored;
        Ok(())
    }

    async fn get_current_snapshot(
        &mut self,
    ) -> Result<Option<Snapshot<TypeConfig>>, StorageError<NodeId>> {
        // Snapshots are never built (policy `Never`); a follower that is
        // behind gets the log, which is never purged.
        Ok(None)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use openraft::CommittedLeaderId;

    fn block_on<F: std::future::Future>(f: F) -> F::Output {
        tokio::runtime::Builder::new_current_thread()
            .build()
            .expect("a runtime")
            .block_on(f)
    }

    fn temp_dir(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("chorus-store-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        dir
    }

    #[test]
    fn the_vote_and_commit_point_survive_a_restart() {
        let dir = temp_dir("vote");
        let vote = Vote::new(7, 2);
        let committed = LogId::new(CommittedLeaderId::new(7, 2), 3);
        block_on(async {
            let mut s = LogStore::open(&dir).expect("open");
            s.save_vote(&vote).await.expect("save");
            s.save_committed(Some(committed)).await.expect("commit");
        });
        let (read, read_committed) = block_on(async {
            let mut s = LogStore::open(&dir).expect("reopen");
            (
                s.read_vote().await.expect("read"),
                s.read_committed().await.expect("read"),
            )
        });
        assert_eq!(read, Some(vote));
        assert_eq!(read_committed, Some(committed));
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn a_corrupt_state_file_is_an_error_not_a_fresh_start() {
        // Starting afresh would forget the vote: the replica could vote
        // twice in one term.
        let dir = temp_dir("corrupt");
        std::fs::create_dir_all(&dir).expect("dir");
        std::fs::write(dir.join(STATE_FILE), b"{ not json").expect("write");
        assert!(matches!(
            LogStore::open(&dir),
            Err(StoreError::Corrupt { .. })
        ));
        let _ = std::fs::remove_dir_all(&dir);
    }
}
