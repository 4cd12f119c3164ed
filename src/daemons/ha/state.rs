//! mip4-ha's record of itself (`state_file`, default `ha.state` beside the
//! control socket under /run), written through [`crate::daemons::record`]
//! whenever a binding, a node's replay state or what is installed in the
//! kernel changed, and before the reply that follows such a change
//! leaves. The next instance restores the bindings still within their
//! lifetime and removes what no restored binding owns (issue 13).
//!
//! Two files: a snapshot (`state_file`) and a journal beside it
//! (`state_file.journal`, one JSON entry per line). A change appends only
//! what changed (a binding, a node, the kernel part) to the journal, so a
//! registration costs the same with a million bindings as with one (issue
//! 14 §4); once the journal holds more entries than twice the snapshot
//! (and at least [`MIN_JOURNAL`]), the next save writes a new snapshot and
//! starts the journal again, so the snapshots' cost stays O(1) per change,
//! amortised. The journal's first line names the snapshot generation it
//! continues: a journal left beside a newer snapshot (a crash between the
//! two writes) is older than it and ignored.
//!
//! A compaction's snapshot is written by a thread of its own (at a
//! million bindings it is hundreds of megabytes of JSON, seconds the loop
//! must not stand still): meanwhile the loop appends to the old journal,
//! which with the old snapshot stays complete, and keeps the lines since
//! the export for the new one. Once the thread is done, the new journal
//! is written beside (`.journal.next`), the snapshot renamed into place,
//! then the journal: a crash between the two renames leaves the new
//! snapshot with `.journal.next`, which [`load`] then takes.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::Write;
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use tracing::{info, warn};

use super::kernel::KernelRecord;
use crate::daemons::record;
use crate::ha::persist::{SavedBinding, SavedNode};
use crate::ha::SavedCache;

const DAEMON: &str = "mip4-ha";
/// Raised when a field changes meaning; an older record is then refused.
const VERSION: u32 = 1;

#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct HaRecord {
    /// "mip4-ha": another daemon's record is not taken up.
    daemon: String,
    version: u32,
    /// The home agent address it served: another HA's record is foreign.
    home_agent: Ipv4Addr,
    cache: SavedCache,
    kernel: KernelRecord,
    /// The generation of this snapshot: the journal that continues it
    /// names it (0 in records written before the journal existed).
    #[serde(default)]
    generation: u64,
}

/// One line of the journal: what changed, as it is now.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub enum Entry {
    /// The first line: the snapshot generation this journal continues.
    Continues(u64),
    /// A binding made or renewed.
    Binding(SavedBinding),
    /// The binding of this home address is gone.
    Unbound(Ipv4Addr),
    /// A node's replay state and pool address.
    Node(SavedNode),
    /// What is installed in the kernel.
    Kernel(KernelRecord),
}

/// A journal shorter than this is never compacted.
const MIN_JOURNAL: usize = 1024;

/// The largest record believed: about a kilobyte per configured node,
/// snapshot or journal (a binding and its node's replay state are a few
/// hundred bytes of JSON each).
pub fn max_len(mobile_nodes: usize) -> u64 {
    (16 << 20) + 1024 * mobile_nodes as u64
}

fn journal_path(path: &Path) -> PathBuf {
    let mut p = path.as_os_str().to_owned();
    p.push(".journal");
    PathBuf::from(p)
}

/// What an earlier instance left: its bindings and replay state, and what
/// it held in the kernel (the snapshot with its journal applied), and the
/// generation of that snapshot. Empty on a first start, and when the
/// record is corrupt or foreign (logged, and the files set aside for the
/// operator): never a reason not to start.
pub fn load(
    path: &Path,
    home_agent: Ipv4Addr,
    max_len: u64,
) -> (Option<SavedCache>, KernelRecord, u64) {
    let refuse = |p: &Path, why: String| {
        record::refused(p, &format!("{why} (an empty binding cache)"));
        (None, KernelRecord::default(), 0)
    };
    let r: HaRecord = match record::read_up_to(path, max_len) {
        Ok(Some(r)) => r,
        Ok(None) => return (None, KernelRecord::default(), 0),
        Err(e) => return refuse(path, e.to_string()),
    };
    let where_ = path.display();
    if r.daemon != DAEMON || r.version != VERSION {
        return refuse(
            path,
            format!(
                "{where_}: a record of {} version {}, not of {DAEMON} version {VERSION}",
                r.daemon, r.version
            ),
        );
    }
    if r.home_agent != home_agent {
        return refuse(
            path,
            format!(
                "{where_}: the record of home agent {}, this is {home_agent}",
                r.home_agent
            ),
        );
    }
    let (mut cache, mut kernel, generation) = (r.cache, r.kernel, r.generation);
    let jpath = journal_path(path);
    let jnext = record::beside(&jpath, ".next");
    let journal = read_journal(&jpath, max_len, generation)
        .and_then(|j| match j {
            Some(entries) => Ok(Some(entries)),
            None => read_journal(&jnext, max_len, generation),
        })
        .map(Option::unwrap_or_default);
    match journal {
        Ok(entries) => {
            let n = entries.len();
            apply(&mut cache, &mut kernel, entries);
            if n > 0 {
                info!(journal = %jpath.display(), entries = n, "journal of the previous instance applied");
            }
        }
        Err(why) => return refuse(&jpath, why),
    }
    info!(state_file = %where_, bindings = cache.bindings.len(), "state of the previous instance read");
    (Some(cache), kernel, generation)
}

/// The journal's entries after its first line, if it continues snapshot
/// `generation` (else `None`: it is another snapshot's, or there is no
/// journal). A last line cut short (the process killed while writing it)
/// is left out: its reply had not left.
fn read_journal(path: &Path, max_len: u64, generation: u64) -> Result<Option<Vec<Entry>>, String> {
    let text = match record::read_bytes(path, max_len) {
        Ok(Some(t)) => t,
        Ok(None) => return Ok(None),
        Err(e) => return Err(e.to_string()),
    };
    let complete = text.ends_with(b"\n");
    let lines: Vec<&[u8]> = text
        .split(|&b| b == b'\n')
        .filter(|l| !l.is_empty())
        .collect();
    let mut entries = Vec::with_capacity(lines.len());
    for (i, line) in lines.iter().enumerate() {
        match serde_json::from_slice::<Entry>(line) {
            Ok(e) => entries.push(e),
            Err(_) if i + 1 == lines.len() && !complete => break,
            Err(e) => return Err(format!("{}: line {}: {e}", path.display(), i + 1)),
        }
    }
    match entries.first() {
        Some(Entry::Continues(g)) if *g == generation => Ok(Some(entries.split_off(1))),
        Some(Entry::Continues(_)) | None => Ok(None),
        Some(_) => Err(format!(
            "{}: line 1: not the snapshot generation it continues",
            path.display()
        )),
    }
}

/// The snapshot with the journal's entries applied, in order.
fn apply(cache: &mut SavedCache, kernel: &mut KernelRecord, entries: Vec<Entry>) {
    if entries.is_empty() {
        return;
    }
    let mut bindings: BTreeMap<Ipv4Addr, SavedBinding> = std::mem::take(&mut cache.bindings)
        .into_iter()
        .map(|b| (b.home_address, b))
        .collect();
    let mut nodes: BTreeMap<u32, SavedNode> = std::mem::take(&mut cache.nodes)
        .into_iter()
        .map(|n| (n.spi, n))
        .collect();
    for e in entries {
        match e {
            Entry::Binding(b) => {
                bindings.insert(b.home_address, b);
            }
            Entry::Unbound(h) => {
                bindings.remove(&h);
            }
            Entry::Node(n) => {
                nodes.insert(n.spi, n);
            }
            Entry::Kernel(k) => *kernel = k,
            Entry::Continues(_) => {}
        }
    }
    cache.bindings = bindings.into_values().collect();
    cache.nodes = nodes.into_values().collect();
}

/// The record being written: the snapshot's generation and size, and the
/// journal open for appending.
pub struct Record {
    path: PathBuf,
    home_agent: Ipv4Addr,
    generation: u64,
    /// Bindings and nodes in the snapshot.
    snapshot_len: usize,
    journal: Option<File>,
    /// Entries appended since the snapshot.
    entries: usize,
    /// A compaction's snapshot being written.
    writing: Option<Writing>,
}

/// A snapshot a thread of its own writes (to `.next` beside the record),
/// and the journal that will continue it.
struct Writing {
    generation: u64,
    len: usize,
    thread: std::thread::JoinHandle<std::io::Result<()>>,
    /// Its first line and the entries appended since the export.
    journal: Vec<u8>,
    entries: usize,
}

impl Record {
    /// Continues after snapshot `generation` (from [`load`]); the first
    /// save writes a snapshot.
    pub fn new(path: &Path, home_agent: Ipv4Addr, generation: u64) -> Record {
        Record {
            path: path.to_path_buf(),
            home_agent,
            generation,
            snapshot_len: 0,
            journal: None,
            entries: 0,
            writing: None,
        }
    }

    /// The next save must be a snapshot, written at once: there is no
    /// journal to append to (none yet, or it failed).
    pub fn wants_snapshot(&self) -> bool {
        self.journal.is_none()
    }

    /// The journal outgrew its snapshot and no compaction is under way:
    /// time for [`compact`](Self::compact).
    pub fn wants_compaction(&self) -> bool {
        self.writing.is_none() && self.entries >= MIN_JOURNAL.max(2 * self.snapshot_len)
    }

    /// Starts writing a new snapshot of `cache` and `kernel` (exported
    /// after the last [`append`](Self::append)) on a thread of its own;
    /// the journal takes over once it is written.
    pub fn compact(&mut self, cache: SavedCache, kernel: KernelRecord) {
        if self.writing.is_some() || self.journal.is_none() {
            return;
        }
        let generation = self.generation + 1;
        let len = cache.bindings.len() + cache.nodes.len();
        let r = self.record_of(cache, kernel, generation);
        let next = record::beside(&self.path, ".next");
        let thread = std::thread::Builder::new()
            .name("mip4-ha-record".into())
            .spawn(move || {
                // Transient, and hundreds of megabytes: small pages.
                // Written out here, not in the loop: ext4 writes a file
                // renamed over another out at the rename (auto_da_alloc),
                // and the loop renames it into place.
                let written = crate::sys::hugepage::small_pages(|| serde_json::to_vec(&r))
                    .map_err(std::io::Error::other)
                    .and_then(|text| record::write_new(&next, &text))
                    .and_then(|()| File::open(&next)?.sync_data());
                // The export and its JSON (hundreds of megabytes at a
                // million bindings) go back to the kernel: freed, they
                // would stay in the allocator's arenas, resident.
                drop(r);
                crate::sys::malloc::trim();
                written
            });
        match thread {
            Ok(thread) => {
                self.writing = Some(Writing {
                    generation,
                    len,
                    thread,
                    journal: line(&Entry::Continues(generation)),
                    entries: 0,
                })
            }
            Err(e) => warn!("cannot start writing the snapshot: {e}"),
        }
    }

    fn record_of(&self, cache: SavedCache, kernel: KernelRecord, generation: u64) -> HaRecord {
        HaRecord {
            daemon: DAEMON.to_string(),
            version: VERSION,
            home_agent: self.home_agent,
            cache,
            kernel,
            generation,
        }
    }

    /// Takes up the compaction's snapshot once its thread is done (or, with
    /// `wait`, waits for it).
    fn settle(&mut self, wait: bool) {
        if !wait
            && !self
                .writing
                .as_ref()
                .is_some_and(|w| w.thread.is_finished())
        {
            return;
        }
        let Some(w) = self.writing.take() else { return };
        let written = w
            .thread
            .join()
            .unwrap_or_else(|_| Err(std::io::Error::other("the thread writing it panicked")));
        let jpath = journal_path(&self.path);
        let jnext = record::beside(&jpath, ".next");
        // The snapshot and journal the renames replace are released by a
        // thread of their own: the last reference to a file of hundreds of
        // megabytes frees it then and there (on a disk mounted with
        // `discard`, a synchronous discard): half a second of the loop
        // at a million bindings.
        let replaced = Replaced(File::open(&self.path).ok(), self.journal.take());
        let taken = written
            .and_then(|()| record::write_new(&jnext, &w.journal))
            .and_then(|()| std::fs::rename(record::beside(&self.path, ".next"), &self.path))
            .and_then(|()| std::fs::rename(&jnext, &jpath))
            .and_then(|()| record::open_append(&jpath, false));
        match taken {
            Ok(f) => {
                self.journal = Some(f);
                self.generation = w.generation;
                self.snapshot_len = w.len;
                self.entries = w.entries;
            }
            Err(e) => {
                // The old snapshot and journal stand, or the new snapshot
                // and `.journal.next` do: the next save writes everything.
                warn!(state_file = %self.path.display(), "cannot take up the new snapshot: {e}");
                self.journal = None;
            }
        }
        replaced.release();
    }

    /// Replaces the record with everything, and starts a new journal.
    pub fn snapshot(&mut self, cache: SavedCache, kernel: KernelRecord) {
        // Superseded: a compaction under way is taken up (the generations
        // stay in order), then this snapshot replaces it.
        self.settle(true);
        self.journal = None;
        self.generation += 1;
        self.snapshot_len = cache.bindings.len() + cache.nodes.len();
        if !save(&self.path, &self.record_of(cache, kernel, self.generation)) {
            return;
        }
        let jpath = journal_path(&self.path);
        let started = record::open_append(&jpath, true).and_then(|mut f| {
            f.write_all(&line(&Entry::Continues(self.generation)))?;
            Ok(f)
        });
        match started {
            Ok(f) => {
                self.journal = Some(f);
                self.entries = 0;
            }
            Err(e) => {
                warn!(journal = %jpath.display(), "cannot start the journal: {e}");
            }
        }
    }

    /// Appends `entries` to the journal (in one write); on failure, the
    /// next save is a snapshot.
    pub fn append(&mut self, entries: &[Entry]) {
        let Some(f) = &mut self.journal else { return };
        let mut buf = Vec::with_capacity(entries.len() * 256);
        for e in entries {
            write_line(&mut buf, e);
        }
        if let Err(e) = f.write_all(&buf) {
            warn!(state_file = %self.path.display(), "cannot append to the journal: {e}");
            self.journal = None;
            return;
        }
        self.entries += entries.len();
        if let Some(w) = &mut self.writing {
            w.journal.extend_from_slice(&buf);
            w.entries += entries.len();
        }
    }

    /// Takes up the compaction's snapshot if its thread is done (the
    /// daemon asks before each save).
    pub fn take_up(&mut self) {
        self.settle(false);
    }
}

/// A snapshot and a journal replaced by a compaction's, still open.
struct Replaced(Option<File>, Option<File>);

impl Replaced {
    /// Closes them on a thread of its own (here, if none can start).
    fn release(self) {
        if self.0.is_none() && self.1.is_none() {
            return;
        }
        let _ = std::thread::Builder::new()
            .name("mip4-ha-release".into())
            .spawn(move || drop(self));
    }
}

fn line(e: &Entry) -> Vec<u8> {
    let mut v = Vec::new();
    write_line(&mut v, e);
    v
}

/// `e` as one journal line, at the end of `buf` (serialised in place: no
/// buffer of its own per entry).
fn write_line(buf: &mut Vec<u8>, e: &Entry) {
    let start = buf.len();
    if serde_json::to_writer(&mut *buf, e).is_err() {
        buf.truncate(start);
    }
    buf.push(b'\n');
}

/// Replaces the snapshot; a failure is logged and the daemon serves on
/// (its next change tries again).
fn save(path: &Path, r: &HaRecord) -> bool {
    match record::write_compact(path, r) {
        Ok(()) => true,
        Err(e) => {
            warn!(state_file = %path.display(), "cannot save the binding cache: {e}");
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ha::TunnelMode;
    use crate::replay::{HaReplayState, ReplayMethod};
    use std::net::SocketAddrV4;

    const HA: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 1);

    fn binding(home: u8, identification: u64) -> SavedBinding {
        SavedBinding {
            home_address: Ipv4Addr::new(10, 1, 0, home),
            care_of_address: Ipv4Addr::new(198, 51, 100, 7),
            source: SocketAddrV4::new(Ipv4Addr::new(198, 51, 100, 7), 434),
            lifetime: 600,
            expires_unix_ms: 4_000_000_000_000,
            identification,
            flags: 0,
            reverse_tunnel: false,
            tunnel: TunnelMode::Ipip,
            nai: None,
            ipv6: None,
            spi: 256 + u32::from(home),
        }
    }

    fn node(spi: u32, last: u64) -> SavedNode {
        SavedNode {
            spi,
            replay: HaReplayState {
                method: ReplayMethod::Timestamp,
                last_accepted: Some(last),
                issued_nonce: None,
            },
            assigned: None,
        }
    }

    fn cache(bindings: Vec<SavedBinding>, nodes: Vec<SavedNode>) -> SavedCache {
        SavedCache { bindings, nodes }
    }

    #[test]
    fn the_journal_continues_the_snapshot_in_order() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("ha.state");
        let mut r = Record::new(&path, HA, 0);
        assert!(r.wants_snapshot(), "the first save is a snapshot");
        r.snapshot(
            cache(vec![binding(1, 1), binding(2, 1)], vec![node(257, 1)]),
            KernelRecord::default(),
        );
        assert!(!r.wants_snapshot());
        let kernel = KernelRecord {
            ip_forward_was: Some(false),
            ..KernelRecord::default()
        };
        r.append(&[
            Entry::Node(node(257, 5)),
            Entry::Binding(binding(1, 5)),
            Entry::Unbound(Ipv4Addr::new(10, 1, 0, 2)),
            Entry::Binding(binding(3, 1)),
        ]);
        r.append(&[Entry::Kernel(kernel.clone())]);
        let (c, k, generation) = load(&path, HA, max_len(10));
        let c = c.expect("a record");
        assert_eq!(generation, 1);
        assert_eq!(c.bindings, [binding(1, 5), binding(3, 1)]);
        assert_eq!(c.nodes, [node(257, 5)]);
        assert_eq!(k, kernel);
    }

    #[test]
    fn a_journal_older_than_the_snapshot_is_ignored_and_a_torn_line_left_out() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("ha.state");
        let mut r = Record::new(&path, HA, 0);
        r.snapshot(cache(vec![binding(1, 1)], vec![]), KernelRecord::default());
        r.append(&[Entry::Binding(binding(1, 2))]);
        // Killed while appending: the last line is cut short.
        let jpath = journal_path(&path);
        let mut f = record::open_append(&jpath, false).unwrap();
        f.write_all(b"{\"binding\":{\"home_addr").unwrap();
        let (c, _, _) = load(&path, HA, max_len(10));
        assert_eq!(c.unwrap().bindings, [binding(1, 2)]);

        // A snapshot of generation 2 written, the journal not yet reset.
        let old_journal = std::fs::read(&jpath).unwrap();
        r.snapshot(cache(vec![binding(1, 3)], vec![]), KernelRecord::default());
        std::fs::write(&jpath, old_journal).unwrap();
        let (c, _, generation) = load(&path, HA, max_len(10));
        assert_eq!(generation, 2);
        assert_eq!(c.unwrap().bindings, [binding(1, 3)]);
    }

    #[test]
    fn the_journal_is_compacted_once_it_outgrows_its_snapshot() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("ha.state");
        let mut r = Record::new(&path, HA, 0);
        r.snapshot(cache(vec![binding(1, 1)], vec![]), KernelRecord::default());
        let last = MIN_JOURNAL as u64 + 1;
        for i in 2..=last {
            assert!(!r.wants_compaction(), "{i}");
            r.append(&[Entry::Binding(binding(1, i))]);
        }
        assert!(r.wants_compaction() && !r.wants_snapshot());
        // Compacted in the background; the loop appends on meanwhile.
        r.compact(
            cache(vec![binding(1, last)], vec![]),
            KernelRecord::default(),
        );
        assert!(!r.wants_compaction(), "one compaction at a time");
        r.append(&[Entry::Binding(binding(2, 1))]);
        // Before the new snapshot is taken up, the old one and its journal
        // hold everything; after, the new one and its journal do.
        let (c, _, generation) = load(&path, HA, max_len(10));
        assert_eq!(generation, 1);
        assert_eq!(c.unwrap().bindings, [binding(1, last), binding(2, 1)]);
        r.settle(true);
        r.append(&[Entry::Binding(binding(3, 1))]);
        let (c, _, generation) = load(&path, HA, max_len(10));
        assert_eq!(generation, 2);
        assert_eq!(
            c.unwrap().bindings,
            [binding(1, last), binding(2, 1), binding(3, 1)]
        );
        assert_eq!(
            r.entries, 2,
            "the new journal holds what followed the export"
        );
    }

    #[test]
    fn a_crash_between_the_compactions_renames_loses_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("ha.state");
        let mut r = Record::new(&path, HA, 0);
        r.snapshot(cache(vec![binding(1, 1)], vec![]), KernelRecord::default());
        r.append(&[Entry::Binding(binding(1, 2))]);
        r.compact(cache(vec![binding(1, 2)], vec![]), KernelRecord::default());
        r.append(&[Entry::Binding(binding(2, 1))]);
        // The new snapshot and its journal written, only the snapshot
        // renamed into place (then the process died).
        let w = r.writing.take().unwrap();
        w.thread.join().unwrap().unwrap();
        let jnext = record::beside(&journal_path(&path), ".next");
        record::write_new(&jnext, &w.journal).unwrap();
        std::fs::rename(record::beside(&path, ".next"), &path).unwrap();
        let (c, _, generation) = load(&path, HA, max_len(10));
        assert_eq!(generation, 2);
        assert_eq!(c.unwrap().bindings, [binding(1, 2), binding(2, 1)]);
    }
}
