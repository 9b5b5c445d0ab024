//! Durable Raft storage in `data_dir/raft.redb`.
//!
//! Raft reads everything from an in-memory copy. What Raft's safety needs durable is written
//! through to redb in one fsync'd transaction *before* the memory copy changes: new log
//! entries, and the term and vote. Two things are kept in memory and written only with those
//! or at a checkpoint, since each transaction costs several pages whatever it holds:
//! - the commit index when nothing else changed (Raft learns it again from the leader);
//! - the state machine: it is a function of the log, so it is saved at checkpoints (when the
//!   log is compacted, and at shutdown) together with its applied index, and after a crash
//!   the node applies the log again from the last checkpoint. Entries are compacted only up
//!   to a saved state, so the log always holds what the replay needs.
//!
//! A proposal reported applied survives a crash: its entry was durable in this node's log
//! before it was applied (raft-rs hands out persisted entries only), and on a quorum's.
//!
//! Tables:
//! - `log`: index → encoded `Entry`
//! - `meta`: `hs`, `cs`, `trunc` (index and term of the last compacted entry), `applied`,
//!   `state` (the state machine as of `applied`), `node_id`, `cluster_id`, `run_id`.
//!
//! Invariants checked on open (a violation is a clear error, never a panic inside raft):
//! entries are contiguous from `trunc.index + 1`, `trunc.index <= applied <= commit <= last`.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use parking_lot::RwLock;
use raft::eraftpb::{ConfState, Entry, HardState, Snapshot, SnapshotMetadata};
use raft::{GetEntriesContext, RaftState, Storage, StorageError};
use redb::{Database, ReadableDatabase, ReadableTable, TableDefinition};

use super::codec;
use crate::fsm::ClusterState;
use crate::model::NodeId;

const LOG: TableDefinition<'_, u64, &[u8]> = TableDefinition::new("log");
const META: TableDefinition<'_, &str, &[u8]> = TableDefinition::new("meta");
/// The state machine, apart from `meta`: redb keeps a value in its table's leaf page, and a
/// state of many masters in `meta` made every hard state update rewrite pages of its size.
/// (Older data dirs have it as `meta`'s `state`; it moves here at the next checkpoint.)
const STATE: TableDefinition<'_, &str, &[u8]> = TableDefinition::new("state");

/// File name inside `data_dir`.
pub const DB_FILE: &str = "raft.redb";

/// Index and term of the initial configuration for a freshly bootstrapped cluster. All
/// initial voters start from an identical snapshot here; nodes added later start empty.
pub const INIT_INDEX: u64 = 5;
/// See [`INIT_INDEX`].
pub const INIT_TERM: u64 = 5;

/// Storage failures. A failed write is fatal for the node (raft cannot continue safely).
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The database file could not be created, opened or written.
    #[error("raft storage at {path}: {source}")]
    Db {
        /// The file.
        path: PathBuf,
        /// Cause.
        #[source]
        source: redb::Error,
    },
    /// The data dir holds data that violates an invariant.
    #[error("corrupt data dir {path}: {what}")]
    Corrupt {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        what: String,
    },
    /// The data dir belongs to another node or cluster.
    #[error("data dir {path} belongs to {what}; refusing to use it")]
    Foreign {
        /// The file.
        path: PathBuf,
        /// Whose it is.
        what: String,
    },
    /// The data dir could not be created.
    #[error("cannot create data dir {path}: {source}")]
    Io {
        /// The dir.
        path: PathBuf,
        /// Cause.
        #[source]
        source: std::io::Error,
    },
}

/// What was in memory; mirrors the durable tables.
#[derive(Default)]
struct Mem {
    hs: HardState,
    cs: ConfState,
    trunc_index: u64,
    trunc_term: u64,
    /// `entries[0].index == trunc_index + 1` when not empty.
    entries: Vec<Entry>,
    applied: u64,
    /// Snapshot of the state machine as last applied (in memory, possibly past the saved
    /// `applied`), served to lagging followers.
    snapshot: Snapshot,
    /// The hard state as last written (`hs` may have a newer commit index).
    durable_hs: HardState,
}

impl Mem {
    fn last_index(&self) -> u64 {
        self.entries.last().map_or(self.trunc_index, |e| e.index)
    }

    fn term(&self, idx: u64) -> raft::Result<u64> {
        if idx == self.trunc_index {
            return Ok(self.trunc_term);
        }
        if idx < self.trunc_index {
            return Err(raft::Error::Store(StorageError::Compacted));
        }
        let off = (idx - self.trunc_index - 1) as usize;
        self.entries
            .get(off)
            .map(|e| e.term)
            .ok_or(raft::Error::Store(StorageError::Unavailable))
    }
}

/// The state machine as of an applied index, saved with the conf state at that index.
pub struct AppliedState<'a> {
    /// Last applied index.
    pub index: u64,
    /// Raft's commit index (at least `index`).
    pub commit: u64,
    /// Conf state as of `index`.
    pub cs: &'a ConfState,
    /// The state machine as of `index`.
    pub state: &'a ClusterState,
}

/// What the node found in its data dir at start.
pub struct Recovered {
    /// The state machine as of `applied`.
    pub state: ClusterState,
    /// Last applied index (for `raft::Config::applied`).
    pub applied: u64,
    /// The node's Sentinel-style run id (40 hex chars), generated on first start.
    pub run_id: String,
    /// The store had no Raft state (new node).
    pub fresh: bool,
    /// The vote guard as last saved (see [`VoteGuard`]).
    pub vote_guard: VoteGuard,
    /// The commit index found on disk: entries up to it that are applied again at start
    /// were applied before (probably: the state is saved only at checkpoints).
    pub commit: u64,
}

/// What keeps a node that lost its data from voting with a log it no longer has.
///
/// A node that starts on an empty data dir without bootstrapping may have voted and
/// acknowledged entries in an earlier life. Until it has been re-admitted through the log
/// (seen as a learner, then promoted), it neither votes nor campaigns. Once re-admitted, it
/// still refuses votes for any term up to the one it was promoted in, since it may have
/// voted in those terms before its data was lost.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct VoteGuard {
    /// Started empty without bootstrapping and not re-admitted yet.
    pub awaiting: bool,
    /// Seen as a learner since then (promotion from here re-admits it).
    pub seen_learner: bool,
    /// Votes for terms up to this one are refused.
    pub floor: u64,
}

impl VoteGuard {
    fn to_bytes(self) -> [u8; 10] {
        let mut b = [0u8; 10];
        b[0] = self.awaiting as u8;
        b[1] = self.seen_learner as u8;
        b[2..].copy_from_slice(&self.floor.to_be_bytes());
        b
    }

    fn from_bytes(b: &[u8]) -> Result<VoteGuard, String> {
        if b.len() != 10 || b[0] > 1 || b[1] > 1 {
            return Err("vote guard record is malformed".into());
        }
        Ok(VoteGuard {
            awaiting: b[0] == 1,
            seen_learner: b[1] == 1,
            floor: u64_from(&b[2..])?,
        })
    }
}

/// Durable raft storage. Cheap to clone; clones share the same file and memory.
#[derive(Clone)]
pub struct DiskStore {
    db: Arc<Database>,
    path: Arc<PathBuf>,
    mem: Arc<RwLock<Mem>>,
}

impl DiskStore {
    /// Opens (or creates) the store in `data_dir`, checks it, and checks that it belongs to
    /// `node_id` of `cluster_id`.
    pub fn open(
        data_dir: &Path,
        node_id: NodeId,
        cluster_id: &str,
    ) -> Result<(DiskStore, Recovered), StoreError> {
        std::fs::create_dir_all(data_dir).map_err(|source| StoreError::Io {
            path: data_dir.to_path_buf(),
            source,
        })?;
        let path = data_dir.join(DB_FILE);
        let db_err = |e: redb::Error| StoreError::Db {
            path: path.clone(),
            source: e,
        };
        let corrupt = |what: String| StoreError::Corrupt {
            path: path.clone(),
            what,
        };
        // A file that exists but is not a redb database (or is truncated) is reported as
        // corrupt rather than silently recreated: it may be the only copy of this node's log.
        let db = if path.exists() {
            Database::open(&path).map_err(|e| corrupt(format!("cannot open database: {e}")))?
        } else {
            Database::create(&path).map_err(|e| db_err(e.into()))?
        };
        let store = DiskStore {
            db: Arc::new(db),
            path: Arc::new(path.clone()),
            mem: Arc::default(),
        };
        let rec = store.load(node_id, cluster_id).map_err(|e| match e {
            LoadError::Db(e) => db_err(e),
            LoadError::Corrupt(what) => corrupt(what),
            LoadError::Foreign(what) => StoreError::Foreign {
                path: path.clone(),
                what,
            },
        })?;
        Ok((store, rec))
    }

    fn load(&self, node_id: NodeId, cluster_id: &str) -> Result<Recovered, LoadError> {
        let (fresh, run_id) = self.claim(node_id, cluster_id)?;
        let (mut m, vote_guard, state) = self.read()?;
        check(&m, &state)?;
        let last = m.last_index();
        let fresh = fresh || (m.cs.voters.is_empty() && m.cs.learners.is_empty() && last == 0);
        let applied = m.applied;
        m.snapshot = build_snapshot(applied, m.term(applied).unwrap_or(0), &m.cs, &state);
        m.durable_hs = m.hs.clone();
        let commit = m.hs.commit;
        *self.mem.write() = m;
        Ok(Recovered {
            state,
            applied,
            run_id,
            fresh,
            vote_guard,
            commit,
        })
    }

    /// Checks that the store belongs to `node_id` of `cluster_id`, or marks it as theirs when
    /// it is new, and returns whether it was new and the node's run id (made on first start).
    fn claim(&self, node_id: NodeId, cluster_id: &str) -> Result<(bool, String), LoadError> {
        let tx = self.db.begin_write().map_err(redb::Error::from)?;
        let mut fresh = false;
        let run_id;
        {
            let mut meta = tx.open_table(META).map_err(redb::Error::from)?;
            let _ = tx.open_table(LOG).map_err(redb::Error::from)?;
            let _ = tx.open_table(STATE).map_err(redb::Error::from)?;
            let get = |meta: &redb::Table<'_, &str, &[u8]>,
                       k: &str|
             -> Result<Option<Vec<u8>>, redb::Error> {
                Ok(meta.get(k)?.map(|v| v.value().to_vec()))
            };
            match get(&meta, "node_id")? {
                Some(v) => {
                    let stored = u64_from(&v).map_err(LoadError::Corrupt)?;
                    if stored != node_id {
                        return Err(LoadError::Foreign(format!(
                            "node {stored}, not node {node_id}"
                        )));
                    }
                }
                None => {
                    fresh = true;
                    meta.insert("node_id", node_id.to_be_bytes().as_slice())
                        .map_err(redb::Error::from)?;
                }
            }
            match get(&meta, "cluster_id")? {
                Some(v) if v != cluster_id.as_bytes() => {
                    return Err(LoadError::Foreign(format!(
                        "cluster '{}', not '{cluster_id}'",
                        String::from_utf8_lossy(&v)
                    )))
                }
                Some(_) => {}
                None => {
                    meta.insert("cluster_id", cluster_id.as_bytes())
                        .map_err(redb::Error::from)?;
                }
            }
            run_id = match get(&meta, "run_id")? {
                Some(v) => String::from_utf8(v)
                    .map_err(|_| LoadError::Corrupt("run_id is not text".into()))?,
                None => {
                    let id = new_run_id();
                    meta.insert("run_id", id.as_bytes())
                        .map_err(redb::Error::from)?;
                    id
                }
            };
        }
        tx.commit().map_err(redb::Error::from)?;
        Ok((fresh, run_id))
    }

    /// Reads the Raft state, the vote guard, the saved state machine and the log, each
    /// decoded and the log checked to be contiguous.
    fn read(&self) -> Result<(Mem, VoteGuard, ClusterState), LoadError> {
        let rtx = self.db.begin_read().map_err(redb::Error::from)?;
        let meta = rtx.open_table(META).map_err(redb::Error::from)?;
        let log = rtx.open_table(LOG).map_err(redb::Error::from)?;
        let state_table = rtx.open_table(STATE).map_err(redb::Error::from)?;
        let get = |k: &str| -> Result<Option<Vec<u8>>, LoadError> {
            Ok(meta
                .get(k)
                .map_err(redb::Error::from)?
                .map(|v| v.value().to_vec()))
        };
        let mut m = Mem::default();
        if let Some(v) = get("hs")? {
            m.hs = codec::decode_hard_state(&v)
                .map_err(|e| LoadError::Corrupt(format!("hard state: {e}")))?;
        }
        if let Some(v) = get("cs")? {
            m.cs = codec::decode_conf_state(&v)
                .map_err(|e| LoadError::Corrupt(format!("conf state: {e}")))?;
        }
        if let Some(v) = get("trunc")? {
            if v.len() != 16 {
                return Err(LoadError::Corrupt("trunc record has the wrong size".into()));
            }
            m.trunc_index = u64_from(&v[..8]).map_err(LoadError::Corrupt)?;
            m.trunc_term = u64_from(&v[8..]).map_err(LoadError::Corrupt)?;
        }
        if let Some(v) = get("applied")? {
            m.applied = u64_from(&v).map_err(LoadError::Corrupt)?;
        }
        let vote_guard = match get("vote_guard")? {
            Some(v) => VoteGuard::from_bytes(&v).map_err(LoadError::Corrupt)?,
            None => VoteGuard::default(),
        };
        let saved_state = match state_table.get("state").map_err(redb::Error::from)? {
            Some(v) => Some(v.value().to_vec()),
            None => get("state")?,
        };
        let state = match saved_state {
            Some(v) => {
                ClusterState::from_bytes(&v).map_err(|e| LoadError::Corrupt(e.to_string()))?
            }
            None => ClusterState::default(),
        };
        m.entries = read_log(&log, m.trunc_index + 1)?;
        Ok((m, vote_guard, state))
    }

    /// Saves the vote guard (its own fsync'd transaction).
    pub fn save_vote_guard(&self, g: VoteGuard) -> Result<(), StoreError> {
        self.write(|tx| {
            let mut meta = tx.open_table(META)?;
            meta.insert("vote_guard", g.to_bytes().as_slice())?;
            Ok(())
        })
    }

    /// Writes the initial configuration shared by all initial voters: a snapshot at
    /// [`INIT_INDEX`]/[`INIT_TERM`] whose state is `state`. Only for an empty store.
    pub fn bootstrap(&self, voters: &[NodeId], state: &ClusterState) -> Result<(), StoreError> {
        let mut snap = Snapshot::default();
        let md = snap.mut_metadata();
        md.index = INIT_INDEX;
        md.term = INIT_TERM;
        md.mut_conf_state().voters = voters.to_vec();
        let mut st = state.clone();
        st.applied_index = INIT_INDEX;
        snap.data = st.to_bytes().into();
        self.install_snapshot(&snap)
    }

    /// Persists a snapshot received from the leader (or the bootstrap one): replaces the log,
    /// conf state, applied index and state machine in one transaction.
    pub fn install_snapshot(&self, snap: &Snapshot) -> Result<(), StoreError> {
        let md = snap.get_metadata();
        let mut hs = self.mem.read().hs.clone();
        hs.commit = hs.commit.max(md.index);
        if hs.term < md.term {
            hs.term = md.term;
        }
        let state = ClusterState::from_bytes(&snap.data).map_err(|e| StoreError::Corrupt {
            path: self.path.to_path_buf(),
            what: format!("snapshot from leader: {e}"),
        })?;
        self.write(|tx| {
            let mut log = tx.open_table(LOG)?;
            log.retain(|_, _| false)?;
            let mut meta = tx.open_table(META)?;
            meta.insert("trunc", trunc_bytes(md.index, md.term).as_slice())?;
            meta.insert("cs", codec::encode(md.get_conf_state()).as_slice())?;
            meta.insert("hs", codec::encode(&hs).as_slice())?;
            meta.insert("applied", md.index.to_be_bytes().as_slice())?;
            meta.remove("state")?;
            tx.open_table(STATE)?.insert("state", snap.data.as_ref())?;
            Ok(())
        })?;
        let mut m = self.mem.write();
        m.entries.clear();
        m.trunc_index = md.index;
        m.trunc_term = md.term;
        m.cs = md.get_conf_state().clone();
        m.durable_hs = hs.clone();
        m.hs = hs;
        m.applied = md.index;
        m.snapshot = build_snapshot(md.index, md.term, &m.cs, &state);
        Ok(())
    }

    /// Appends entries (truncating any conflicting suffix) and saves the hard state.
    pub fn append(&self, entries: &[Entry], hs: Option<&HardState>) -> Result<(), StoreError> {
        self.save(entries, hs, None)
    }

    /// Everything one Ready changes: new entries (truncating any conflicting suffix) and the
    /// hard state in one fsync'd transaction, which must complete before persisted messages
    /// are sent; and the state machine as of its applied index, kept in memory (served as the
    /// snapshot) until the next [`Self::checkpoint`]. Writes nothing when only the commit index
    /// or the applied state changed.
    pub fn save(
        &self,
        entries: &[Entry],
        hs: Option<&HardState>,
        applied: Option<AppliedState<'_>>,
    ) -> Result<(), StoreError> {
        if let Some(a) = &applied {
            let mut m = self.mem.write();
            let term = m.term(a.index).unwrap_or(m.trunc_term);
            m.snapshot = build_snapshot(a.index, term, a.cs, a.state);
        }
        let write_hs = {
            let m = self.mem.read();
            let latest = hs.unwrap_or(&m.hs);
            // Term and vote must be durable before any message that depends on them; the
            // commit index rides along with entries (one more page in a transaction that is
            // written anyway) and is otherwise learned again after a restart.
            let vote_changed = latest.term != m.durable_hs.term || latest.vote != m.durable_hs.vote;
            (vote_changed || (!entries.is_empty() && *latest != m.durable_hs))
                .then(|| latest.clone())
        };
        if entries.is_empty() && write_hs.is_none() {
            if let Some(h) = hs {
                self.mem.write().hs = h.clone();
            }
            return Ok(());
        }
        if let Some(first) = entries.first() {
            let m = self.mem.read();
            if first.index <= m.trunc_index || first.index > m.last_index() + 1 {
                return Err(StoreError::Corrupt {
                    path: self.path.to_path_buf(),
                    what: format!(
                        "append at {} does not fit log ({}, {}]",
                        first.index,
                        m.trunc_index,
                        m.last_index()
                    ),
                });
            }
        }
        self.write(|tx| {
            let mut log = tx.open_table(LOG)?;
            if let Some(first) = entries.first() {
                log.retain_in(first.index.., |_, _| false)?;
                for e in entries {
                    log.insert(e.index, codec::encode(e).as_slice())?;
                }
            }
            if let Some(h) = &write_hs {
                let mut meta = tx.open_table(META)?;
                meta.insert("hs", codec::encode(h).as_slice())?;
            }
            Ok(())
        })?;
        let mut m = self.mem.write();
        if let Some(first) = entries.first() {
            let keep = (first.index - m.trunc_index - 1) as usize;
            m.entries.truncate(keep);
            m.entries.extend_from_slice(entries);
        }
        if let Some(h) = hs {
            m.hs = h.clone();
        }
        if let Some(h) = write_hs {
            m.durable_hs = h;
        }
        Ok(())
    }

    /// Saves the state machine as of an applied index, with the conf state at that index,
    /// and drops log entries up to `compact_upto` (at most the applied index; the term of the
    /// last one dropped is kept so raft can still check the entry after it), in one fsync'd
    /// transaction. The stored commit index is raised to at least the applied index, so
    /// `applied <= commit` holds on disk too.
    pub fn checkpoint(
        &self,
        applied: AppliedState<'_>,
        compact_upto: Option<u64>,
    ) -> Result<(), StoreError> {
        let (hs, compact) = {
            let m = self.mem.read();
            if applied.index < m.applied {
                return Ok(()); // older than what is saved
            }
            let mut hs = m.hs.clone();
            hs.commit = hs.commit.max(applied.commit).max(applied.index);
            let compact = compact_upto
                .filter(|&upto| upto > m.trunc_index && upto <= applied.index)
                .map(|upto| {
                    (
                        upto,
                        m.term(upto).expect("compaction point is in the log"),
                        m.trunc_index + 1,
                    )
                });
            (hs, compact)
        };
        let state_bytes = applied.state.to_bytes();
        self.write(|tx| {
            let mut meta = tx.open_table(META)?;
            meta.insert("hs", codec::encode(&hs).as_slice())?;
            meta.insert("applied", applied.index.to_be_bytes().as_slice())?;
            meta.remove("state")?;
            tx.open_table(STATE)?
                .insert("state", state_bytes.as_slice())?;
            meta.insert("cs", codec::encode(applied.cs).as_slice())?;
            if let Some((upto, term, first)) = compact {
                meta.insert("trunc", trunc_bytes(upto, term).as_slice())?;
                let mut log = tx.open_table(LOG)?;
                log.retain_in(first..=upto, |_, _| false)?;
            }
            Ok(())
        })?;
        let mut m = self.mem.write();
        m.applied = applied.index;
        m.cs = applied.cs.clone();
        m.durable_hs = hs.clone();
        m.hs.commit = m.hs.commit.max(hs.commit);
        let term = m.term(applied.index).unwrap_or(m.trunc_term);
        m.snapshot = build_snapshot(applied.index, term, applied.cs, applied.state);
        if let Some((upto, term, _)) = compact {
            let drop = (upto - m.trunc_index) as usize;
            m.entries.drain(..drop);
            m.trunc_index = upto;
            m.trunc_term = term;
        }
        Ok(())
    }

    /// Number of entries in the log (for the compaction policy).
    pub fn log_len(&self) -> u64 {
        self.mem.read().entries.len() as u64
    }

    /// First index still in the log after compaction.
    pub fn trunc_index(&self) -> u64 {
        self.mem.read().trunc_index
    }

    /// Applied index of the saved state machine (the last checkpoint).
    pub fn applied(&self) -> u64 {
        self.mem.read().applied
    }

    /// Current conf state as stored.
    pub fn conf_state(&self) -> ConfState {
        self.mem.read().cs.clone()
    }

    fn write(
        &self,
        f: impl FnOnce(&redb::WriteTransaction) -> Result<(), redb::Error>,
    ) -> Result<(), StoreError> {
        let run = || -> Result<(), redb::Error> {
            let tx = self.db.begin_write()?;
            f(&tx)?;
            tx.commit()?;
            Ok(())
        };
        run().map_err(|source| StoreError::Db {
            path: self.path.to_path_buf(),
            source,
        })
    }
}

/// The log from `first` on, which must be contiguous, each entry at its own index.
fn read_log(log: &redb::ReadOnlyTable<u64, &[u8]>, first: u64) -> Result<Vec<Entry>, LoadError> {
    let mut entries = Vec::new();
    for (expect, row) in (first..).zip(log.iter().map_err(redb::Error::from)?) {
        let (k, v) = row.map_err(redb::Error::from)?;
        let idx = k.value();
        if idx != expect {
            return Err(LoadError::Corrupt(format!(
                "log gap: expected entry {expect}, found {idx}"
            )));
        }
        let e = codec::decode_entry(v.value())
            .map_err(|e| LoadError::Corrupt(format!("entry {idx}: {e}")))?;
        if e.index != idx {
            return Err(LoadError::Corrupt(format!(
                "entry stored at {idx} claims index {}",
                e.index
            )));
        }
        entries.push(e);
    }
    Ok(entries)
}

/// The invariants between the loaded indexes, the state machine and the log's terms.
fn check(m: &Mem, state: &ClusterState) -> Result<(), LoadError> {
    let last = m.last_index();
    if m.hs.commit > last {
        return Err(LoadError::Corrupt(format!(
            "commit index {} is past the last log entry {last}",
            m.hs.commit
        )));
    }
    if m.applied > m.hs.commit || m.applied < m.trunc_index {
        return Err(LoadError::Corrupt(format!(
            "applied index {} outside [{}, {}]",
            m.applied, m.trunc_index, m.hs.commit
        )));
    }
    if state.applied_index != m.applied {
        return Err(LoadError::Corrupt(format!(
            "state machine is at {} but applied index is {}",
            state.applied_index, m.applied
        )));
    }
    if let Some(e) = m.entries.windows(2).find(|w| w[1].term < w[0].term) {
        return Err(LoadError::Corrupt(format!(
            "term goes backwards at entry {}",
            e[1].index
        )));
    }
    Ok(())
}

enum LoadError {
    Db(redb::Error),
    Corrupt(String),
    Foreign(String),
}

impl From<redb::Error> for LoadError {
    fn from(e: redb::Error) -> Self {
        LoadError::Db(e)
    }
}

fn u64_from(v: &[u8]) -> Result<u64, String> {
    let arr: [u8; 8] = v
        .try_into()
        .map_err(|_| format!("expected 8 bytes, found {}", v.len()))?;
    Ok(u64::from_be_bytes(arr))
}

fn trunc_bytes(index: u64, term: u64) -> [u8; 16] {
    let mut b = [0u8; 16];
    b[..8].copy_from_slice(&index.to_be_bytes());
    b[8..].copy_from_slice(&term.to_be_bytes());
    b
}

fn build_snapshot(index: u64, term: u64, cs: &ConfState, state: &ClusterState) -> Snapshot {
    let mut snap = Snapshot::default();
    let mut md = SnapshotMetadata {
        index,
        term,
        ..Default::default()
    };
    md.set_conf_state(cs.clone());
    snap.set_metadata(md);
    snap.data = state.to_bytes().into();
    snap
}

fn new_run_id() -> String {
    use rand::Rng;
    let mut rng = rand::rng();
    (0..40)
        .map(|_| char::from_digit(rng.random_range(0..16), 16).expect("digit < 16"))
        .collect()
}

impl Storage for DiskStore {
    fn initial_state(&self) -> raft::Result<RaftState> {
        let m = self.mem.read();
        Ok(RaftState::new(m.hs.clone(), m.cs.clone()))
    }

    fn entries(
        &self,
        low: u64,
        high: u64,
        max_size: impl Into<Option<u64>>,
        _context: GetEntriesContext,
    ) -> raft::Result<Vec<Entry>> {
        let m = self.mem.read();
        if low <= m.trunc_index {
            return Err(raft::Error::Store(StorageError::Compacted));
        }
        if high > m.last_index() + 1 {
            return Err(raft::Error::Store(StorageError::Unavailable));
        }
        let lo = (low - m.trunc_index - 1) as usize;
        let hi = (high - m.trunc_index - 1) as usize;
        let mut out = m.entries[lo..hi].to_vec();
        raft::util::limit_size(&mut out, max_size.into());
        Ok(out)
    }

    fn term(&self, idx: u64) -> raft::Result<u64> {
        self.mem.read().term(idx)
    }

    fn first_index(&self) -> raft::Result<u64> {
        Ok(self.mem.read().trunc_index + 1)
    }

    fn last_index(&self) -> raft::Result<u64> {
        Ok(self.mem.read().last_index())
    }

    fn snapshot(&self, request_index: u64, _to: u64) -> raft::Result<Snapshot> {
        let m = self.mem.read();
        if m.snapshot.get_metadata().index < request_index {
            return Err(raft::Error::Store(
                StorageError::SnapshotTemporarilyUnavailable,
            ));
        }
        Ok(m.snapshot.clone())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(index: u64, term: u64) -> Entry {
        Entry {
            index,
            term,
            data: format!("e{index}").into_bytes().into(),
            ..Default::default()
        }
    }

    fn hs(term: u64, commit: u64) -> HardState {
        HardState {
            term,
            commit,
            ..Default::default()
        }
    }

    #[test]
    fn survives_reopen_and_truncates_conflicts() {
        let dir = tempfile::tempdir().unwrap();
        {
            let (s, rec) = DiskStore::open(dir.path(), 1, "c").unwrap();
            assert!(rec.fresh);
            s.bootstrap(&[1, 2, 3], &ClusterState::default()).unwrap();
            s.append(&[entry(6, 5), entry(7, 5), entry(8, 5)], Some(&hs(5, 7)))
                .unwrap();
            // A new leader overwrites 8 with a different term.
            s.append(&[entry(8, 6), entry(9, 6)], Some(&hs(6, 7)))
                .unwrap();
            assert_eq!(s.term(8).unwrap(), 6);
        }
        let (s, rec) = DiskStore::open(dir.path(), 1, "c").unwrap();
        assert!(!rec.fresh);
        assert_eq!(rec.applied, INIT_INDEX);
        assert_eq!(s.first_index().unwrap(), 6);
        assert_eq!(s.last_index().unwrap(), 9);
        assert_eq!(s.term(5).unwrap(), 5);
        assert_eq!(s.term(8).unwrap(), 6);
        assert_eq!(s.initial_state().unwrap().hard_state.commit, 7);
        assert_eq!(s.initial_state().unwrap().conf_state.voters, vec![1, 2, 3]);
        let es = s
            .entries(6, 10, None, GetEntriesContext::empty(false))
            .unwrap();
        assert_eq!(
            es.iter().map(|e| e.index).collect::<Vec<_>>(),
            vec![6, 7, 8, 9]
        );
    }

    #[test]
    fn compaction_keeps_term_and_reports_compacted() {
        let dir = tempfile::tempdir().unwrap();
        let (s, _) = DiskStore::open(dir.path(), 1, "c").unwrap();
        s.bootstrap(&[1], &ClusterState::default()).unwrap();
        s.append(&[entry(6, 5), entry(7, 6), entry(8, 6)], Some(&hs(6, 8)))
            .unwrap();
        let st = ClusterState {
            applied_index: 7,
            ..Default::default()
        };
        let cs = s.conf_state();
        s.checkpoint(
            AppliedState {
                index: 7,
                commit: 8,
                cs: &cs,
                state: &st,
            },
            Some(7),
        )
        .unwrap();
        assert_eq!(s.first_index().unwrap(), 8);
        assert_eq!(s.term(7).unwrap(), 6);
        assert!(matches!(
            s.term(6),
            Err(raft::Error::Store(StorageError::Compacted))
        ));
        assert!(matches!(
            s.entries(7, 9, None, GetEntriesContext::empty(false)),
            Err(raft::Error::Store(StorageError::Compacted))
        ));
        let snap = s.snapshot(7, 2).unwrap();
        assert_eq!(snap.get_metadata().index, 7);
        assert_eq!(snap.get_metadata().term, 6);
        drop(s);
        let (s, rec) = DiskStore::open(dir.path(), 1, "c").unwrap();
        assert_eq!(rec.applied, 7);
        assert_eq!(s.first_index().unwrap(), 8);
        assert_eq!(s.term(7).unwrap(), 6);
    }

    /// What an idle or steadily applying node writes: a Ready that only moves the commit index
    /// or the applied state writes nothing (each transaction costs several pages); entries,
    /// term and vote are durable at once; the state machine at a checkpoint; and a restart
    /// without a checkpoint gets the last saved state and the log to apply again.
    #[test]
    fn only_entries_term_vote_and_checkpoints_are_written() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join(DB_FILE);
        let (s, _) = DiskStore::open(dir.path(), 1, "c").unwrap();
        s.bootstrap(&[1], &ClusterState::default()).unwrap();
        s.append(&[entry(6, 5), entry(7, 5)], Some(&hs(5, 5)))
            .unwrap();
        let cs = s.conf_state();
        let st = |i| ClusterState {
            applied_index: i,
            ..Default::default()
        };
        let before = std::fs::read(&file).unwrap();
        let s7 = st(7);
        s.save(
            &[],
            Some(&hs(5, 7)),
            Some(AppliedState {
                index: 7,
                commit: 7,
                cs: &cs,
                state: &s7,
            }),
        )
        .unwrap();
        assert!(
            std::fs::read(&file).unwrap() == before,
            "a commit index and an applied state alone were written"
        );
        assert_eq!(s.initial_state().unwrap().hard_state.commit, 7);
        assert_eq!(s.snapshot(7, 2).unwrap().get_metadata().index, 7);
        // A new term is durable at once.
        s.save(&[], Some(&hs(6, 7)), None).unwrap();
        assert!(std::fs::read(&file).unwrap() != before);
        drop(s);
        let (s, rec) = DiskStore::open(dir.path(), 1, "c").unwrap();
        assert_eq!(s.initial_state().unwrap().hard_state.term, 6);
        // No checkpoint yet: the saved state is the bootstrap one, the log is all there.
        assert_eq!(rec.applied, INIT_INDEX);
        assert_eq!(s.last_index().unwrap(), 7);
        assert_eq!(rec.commit, 7);
        let s7 = st(7);
        s.checkpoint(
            AppliedState {
                index: 7,
                commit: 7,
                cs: &cs,
                state: &s7,
            },
            None,
        )
        .unwrap();
        drop(s);
        let (s, rec) = DiskStore::open(dir.path(), 1, "c").unwrap();
        assert_eq!(rec.applied, 7);
        assert_eq!(rec.state.applied_index, 7);
        assert_eq!(
            s.first_index().unwrap(),
            6,
            "a checkpoint alone compacts nothing"
        );
    }

    /// Data dirs written before the state machine had its own table still open, and the state
    /// moves to that table at the next checkpoint.
    #[test]
    fn a_state_in_the_older_place_still_loads() {
        let dir = tempfile::tempdir().unwrap();
        {
            let (s, _) = DiskStore::open(dir.path(), 1, "c").unwrap();
            let st = ClusterState {
                current_epoch: 7,
                ..Default::default()
            };
            s.bootstrap(&[1], &st).unwrap();
        }
        {
            // The older layout: the state is `meta`'s `state`.
            let db = Database::open(dir.path().join(DB_FILE)).unwrap();
            let tx = db.begin_write().unwrap();
            {
                let mut state = tx.open_table(STATE).unwrap();
                let v = state.remove("state").unwrap().unwrap().value().to_vec();
                tx.open_table(META)
                    .unwrap()
                    .insert("state", v.as_slice())
                    .unwrap();
            }
            tx.commit().unwrap();
        }
        let (s, rec) = DiskStore::open(dir.path(), 1, "c").unwrap();
        assert_eq!(rec.state.current_epoch, 7);
        assert_eq!(rec.applied, INIT_INDEX);
        let cs = s.conf_state();
        s.append(&[entry(6, 5)], Some(&hs(5, 6))).unwrap();
        let mut st = rec.state.clone();
        st.applied_index = 6;
        s.checkpoint(
            AppliedState {
                index: 6,
                commit: 6,
                cs: &cs,
                state: &st,
            },
            None,
        )
        .unwrap();
        drop(s);
        let db = Database::open(dir.path().join(DB_FILE)).unwrap();
        let rtx = db.begin_read().unwrap();
        assert!(rtx
            .open_table(META)
            .unwrap()
            .get("state")
            .unwrap()
            .is_none());
        drop(rtx);
        drop(db);
        let (_, rec) = DiskStore::open(dir.path(), 1, "c").unwrap();
        assert_eq!((rec.applied, rec.state.current_epoch), (6, 7));
    }

    #[test]
    fn foreign_and_corrupt_dirs_are_clear_errors() {
        let dir = tempfile::tempdir().unwrap();
        drop(DiskStore::open(dir.path(), 1, "c").unwrap());
        assert!(matches!(
            DiskStore::open(dir.path(), 2, "c"),
            Err(StoreError::Foreign { .. })
        ));
        assert!(matches!(
            DiskStore::open(dir.path(), 1, "other"),
            Err(StoreError::Foreign { .. })
        ));

        let garbage = tempfile::tempdir().unwrap();
        std::fs::write(garbage.path().join(DB_FILE), b"this is not a database").unwrap();
        let err = DiskStore::open(garbage.path(), 1, "c")
            .err()
            .expect("must fail");
        assert!(matches!(err, StoreError::Corrupt { .. }), "{err}");
    }

    #[test]
    fn truncated_file_is_a_clear_error() {
        let dir = tempfile::tempdir().unwrap();
        {
            let (s, _) = DiskStore::open(dir.path(), 1, "c").unwrap();
            s.bootstrap(&[1], &ClusterState::default()).unwrap();
            s.append(&[entry(6, 5)], Some(&hs(5, 6))).unwrap();
        }
        let p = dir.path().join(DB_FILE);
        let len = std::fs::metadata(&p).unwrap().len();
        let f = std::fs::OpenOptions::new().write(true).open(&p).unwrap();
        f.set_len(len / 3).unwrap();
        drop(f);
        // Either redb refuses the file or our invariant checks catch the damage; never a panic.
        match DiskStore::open(dir.path(), 1, "c") {
            Err(StoreError::Corrupt { .. }) | Err(StoreError::Db { .. }) => {}
            Err(e) => panic!("unexpected error kind: {e}"),
            Ok((s, rec)) => panic!(
                "truncated file opened silently (applied {}, last {})",
                rec.applied,
                s.last_index().unwrap()
            ),
        }
    }
}
