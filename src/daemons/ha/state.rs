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
//! (and at least [`MIN_JOURNAL`]), it is compacted into a new snapshot
//! (below), so the snapshots' cost stays O(1) per change, amortised. The journal's first line names the snapshot generation it
//! continues: a journal left beside a newer snapshot (a crash between the
//! two writes) is older than it and ignored.
//!
//! A compaction never stands the loop still for the cache (issue 14 §4:
//! at a million bindings an export was 150 ms quiet, a second loaded).
//! The loop only rotates the journal: it starts `.journal.next`, whose
//! first line names the next generation, and appends there from then on.
//! A thread of its own builds the new snapshot from what is on disk, the
//! old snapshot with the old journal applied (no longer written to), and
//! writes it to `.next` beside the record. Once it is done, the loop
//! renames the snapshot into place, then `.journal.next` over the
//! journal (its open file goes on being appended to). A kill at any
//! point leaves one of: the old snapshot, its journal and `.journal.next`
//! (the three applied in order); the new snapshot, the old journal (older
//! than it: ignored) and `.journal.next`; the new snapshot and its
//! journal. [`load`] takes each.

use std::collections::HashMap;
use std::fs::File;
use std::hash::Hash;
use std::io::{BufRead, BufReader, Write};
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
/// it held in the kernel (the snapshot with its journals applied), and the
/// newest generation in the record (the snapshot's, or that of the
/// journal a compaction started after it). Empty on a first start, and
/// when the record is corrupt or foreign (logged, and the files set aside
/// for the operator): never a reason not to start.
pub fn load(
    path: &Path,
    home_agent: Ipv4Addr,
    max_len: u64,
) -> (Option<SavedCache>, KernelRecord, u64) {
    let refuse = |p: &Path, why: String, generation: u64| {
        record::refused(p, &format!("{why} (an empty binding cache)"));
        (None, KernelRecord::default(), generation)
    };
    let r: HaRecord = match record::read_up_to(path, max_len) {
        Ok(Some(r)) => r,
        Ok(None) => return (None, KernelRecord::default(), 0),
        Err(e) => return refuse(path, e.to_string(), 0),
    };
    if let Err(why) = ours(&r, path, home_agent) {
        return refuse(path, why, 0);
    }
    let generation = r.generation;
    let mut m = Merge::new(r.cache, r.kernel);
    let jpath = journal_path(path);
    let jnext = record::beside(&jpath, ".next");
    // Its journal, then the one a compaction started after it; or, the
    // compaction's snapshot renamed into place but not yet its journal,
    // the latter alone. (A refusal's generation stays above every file
    // left, so that none is taken for a newer snapshot's.)
    let newest = match read_journal(&jpath, max_len, generation, &mut m) {
        Ok(Some(())) => match read_journal(&jnext, max_len, generation + 1, &mut m) {
            Ok(next) => generation + u64::from(next.is_some()),
            Err(why) => return refuse(&jnext, why, generation + 2),
        },
        Ok(None) => match read_journal(&jnext, max_len, generation, &mut m) {
            Ok(_) => generation,
            Err(why) => return refuse(&jnext, why, generation + 2),
        },
        Err(why) => return refuse(&jpath, why, generation + 2),
    };
    if m.applied > 0 {
        info!(journal = %jpath.display(), entries = m.applied, "journal of the previous instance applied");
    }
    let (cache, kernel) = m.finish();
    info!(state_file = %path.display(), bindings = cache.bindings.len(), "state of the previous instance read");
    (Some(cache), kernel, newest)
}

/// Why the snapshot `r` read from `path` is not this home agent's.
fn ours(r: &HaRecord, path: &Path, home_agent: Ipv4Addr) -> Result<(), String> {
    let where_ = path.display();
    if r.daemon != DAEMON || r.version != VERSION {
        return Err(format!(
            "{where_}: a record of {} version {}, not of {DAEMON} version {VERSION}",
            r.daemon, r.version
        ));
    }
    if r.home_agent != home_agent {
        return Err(format!(
            "{where_}: the record of home agent {}, this is {home_agent}",
            r.home_agent
        ));
    }
    Ok(())
}

/// Applies the journal at `path` to `m`, if it continues snapshot
/// `generation` (else `None` and nothing applied: it is another
/// snapshot's, or there is no journal). Read a line at a time: at a
/// million bindings a journal is hundreds of megabytes. A last line cut
/// short (the process killed while writing it) is left out: its reply had
/// not left.
fn read_journal(
    path: &Path,
    max_len: u64,
    generation: u64,
    m: &mut Merge,
) -> Result<Option<()>, String> {
    let file = match record::open_trusted(path, max_len) {
        Ok(Some(f)) => f,
        Ok(None) => return Ok(None),
        Err(e) => return Err(e.to_string()),
    };
    let mut r = BufReader::with_capacity(1 << 20, file);
    let mut buf = Vec::new();
    let (mut n, mut continues) = (0, false);
    loop {
        buf.clear();
        let got = r
            .read_until(b'\n', &mut buf)
            .map_err(|e| format!("{}: {e}", path.display()))?;
        if got == 0 {
            break;
        }
        let complete = buf.ends_with(b"\n");
        let text = buf.strip_suffix(b"\n").unwrap_or(&buf);
        if text.is_empty() {
            continue;
        }
        n += 1;
        let e = match serde_json::from_slice::<Entry>(text) {
            Ok(e) => e,
            Err(_) if !complete => break,
            Err(e) => return Err(format!("{}: line {n}: {e}", path.display())),
        };
        match (n, e) {
            (1, Entry::Continues(g)) if g == generation => continues = true,
            (1, Entry::Continues(_)) => return Ok(None),
            (1, _) => {
                return Err(format!(
                    "{}: line 1: not the snapshot generation it continues",
                    path.display()
                ))
            }
            (_, e) => m.apply(e),
        }
    }
    Ok(continues.then_some(()))
}

/// A snapshot with journal entries applied, in order.
struct Merge {
    cache: SavedCache,
    kernel: KernelRecord,
    /// The cache by key, made at the first entry.
    keyed: Option<(Keyed<Ipv4Addr, SavedBinding>, Keyed<u32, SavedNode>)>,
    applied: usize,
}

impl Merge {
    fn new(cache: SavedCache, kernel: KernelRecord) -> Merge {
        Merge {
            cache,
            kernel,
            keyed: None,
            applied: 0,
        }
    }

    fn apply(&mut self, e: Entry) {
        let cache = &mut self.cache;
        let (bindings, nodes) = self.keyed.get_or_insert_with(|| {
            (
                Keyed::new(std::mem::take(&mut cache.bindings), |b| b.home_address),
                Keyed::new(std::mem::take(&mut cache.nodes), |n| n.spi),
            )
        });
        self.applied += 1;
        match e {
            Entry::Binding(b) => bindings.put(b.home_address, b),
            Entry::Unbound(h) => bindings.remove(h),
            Entry::Node(n) => nodes.put(n.spi, n),
            Entry::Kernel(k) => self.kernel = k,
            Entry::Continues(_) => {}
        }
    }

    fn finish(mut self) -> (SavedCache, KernelRecord) {
        if let Some((bindings, nodes)) = self.keyed {
            self.cache.bindings = bindings.finish(|b| b.home_address);
            self.cache.nodes = nodes.finish(|n| n.spi);
        }
        (self.cache, self.kernel)
    }
}

/// Records by key, changed in place: one vector and its index, not a map
/// of a node per record. At a million bindings the freed nodes of a map
/// stayed in the allocator's arenas, resident, while the snapshot's JSON
/// was made; a vector that large goes back to the kernel when freed.
struct Keyed<K, V> {
    items: Vec<Option<V>>,
    at: HashMap<K, usize>,
}

impl<K: Hash + Eq + Ord + Copy, V> Keyed<K, V> {
    fn new(items: Vec<V>, key: impl Fn(&V) -> K) -> Self {
        let mut items: Vec<Option<V>> = items.into_iter().map(Some).collect();
        let mut at = HashMap::with_capacity(items.len());
        for i in 0..items.len() {
            let Some(k) = items[i].as_ref().map(&key) else {
                continue;
            };
            // A key twice: the later one holds.
            if let Some(before) = at.insert(k, i) {
                items[before] = None;
            }
        }
        Keyed { items, at }
    }

    fn put(&mut self, k: K, v: V) {
        match self.at.get(&k) {
            Some(&i) => self.items[i] = Some(v),
            None => {
                self.at.insert(k, self.items.len());
                self.items.push(Some(v));
            }
        }
    }

    fn remove(&mut self, k: K) {
        if let Some(i) = self.at.remove(&k) {
            self.items[i] = None;
        }
    }

    /// What is left, by key.
    fn finish(self, key: impl Fn(&V) -> K) -> Vec<V> {
        drop(self.at);
        let mut v: Vec<V> = self.items.into_iter().flatten().collect();
        v.sort_unstable_by_key(key);
        v
    }
}

/// A compaction's snapshot: snapshot `generation` at `path` with its
/// journal applied, as the next generation. Read back from the files,
/// not exported from the loop's cache: the journal is no longer written
/// to, and the two hold everything it promised.
fn compacted(path: &Path, home_agent: Ipv4Addr, generation: u64) -> Result<HaRecord, String> {
    // Our own files, read back: no limit on their size.
    let r: HaRecord = record::read_up_to(path, u64::MAX)
        .map_err(|e| e.to_string())?
        .ok_or_else(|| format!("{}: no snapshot", path.display()))?;
    ours(&r, path, home_agent)?;
    if r.generation != generation {
        return Err(format!(
            "{}: generation {}, not {generation}",
            path.display(),
            r.generation
        ));
    }
    let mut m = Merge::new(r.cache, r.kernel);
    let jpath = journal_path(path);
    read_journal(&jpath, u64::MAX, generation, &mut m)?.ok_or_else(|| {
        format!(
            "{}: does not continue generation {generation}",
            jpath.display()
        )
    })?;
    let (cache, kernel) = m.finish();
    Ok(HaRecord::new(home_agent, cache, kernel, generation + 1))
}

impl HaRecord {
    fn new(
        home_agent: Ipv4Addr,
        cache: SavedCache,
        kernel: KernelRecord,
        generation: u64,
    ) -> HaRecord {
        HaRecord {
            daemon: DAEMON.to_string(),
            version: VERSION,
            home_agent,
            cache,
            kernel,
            generation,
        }
    }
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
    /// Entries appended since the snapshot (or the rotation).
    entries: usize,
    /// A compaction's snapshot being written.
    writing: Option<Writing>,
}

/// A snapshot a thread of its own builds and writes (to `.next` beside
/// the record): its generation, and its thread, which gives its size.
struct Writing {
    generation: u64,
    thread: std::thread::JoinHandle<Result<usize, String>>,
}

impl Record {
    /// Continues after generation `generation` (from [`load`]); the first
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

    /// Rotates the journal (`.journal.next` from now on) and starts a
    /// thread that builds the next snapshot from the files: O(1) here,
    /// whatever the size of the cache.
    pub fn compact(&mut self) {
        if self.writing.is_some() || self.journal.is_none() {
            return;
        }
        let (from, generation) = (self.generation, self.generation + 1);
        let jnext = record::beside(&journal_path(&self.path), ".next");
        let rotated = record::open_append(&jnext, true).and_then(|mut f| {
            f.write_all(&line(&Entry::Continues(generation)))?;
            Ok(f)
        });
        let rotated = match rotated {
            Ok(f) => f,
            Err(e) => {
                warn!(journal = %jnext.display(), "cannot rotate the journal, the next save writes everything: {e}");
                self.journal = None;
                return;
            }
        };
        let (path, home_agent) = (self.path.clone(), self.home_agent);
        let next = record::beside(&self.path, ".next");
        let thread = std::thread::Builder::new()
            .name("mip4-ha-record".into())
            .spawn(move || {
                let started = std::time::Instant::now();
                // Seconds of a core at a million bindings, beside a loop
                // that answers registrations: it yields to the loop.
                if let Err(e) = crate::sys::sched::set_background() {
                    warn!("journal compaction at normal priority: {e}");
                }
                // Transient, and hundreds of megabytes: small pages.
                // Written out here, not in the loop: ext4 writes a file
                // renamed over another out at the rename (auto_da_alloc),
                // and the loop renames it into place.
                let written = crate::sys::hugepage::small_pages(|| {
                    let r = compacted(&path, home_agent, from)?;
                    let len = r.cache.bindings.len() + r.cache.nodes.len();
                    let text = serde_json::to_vec(&r).map_err(|e| e.to_string())?;
                    drop(r);
                    record::write_new(&next, &text)
                        .and_then(|()| File::open(&next)?.sync_data())
                        .map_err(|e| format!("{}: {e}", next.display()))?;
                    Ok(len)
                });
                // Its buffers (hundreds of megabytes at a million
                // bindings) go back to the kernel: freed, they would stay
                // in the allocator's arenas, resident.
                crate::sys::malloc::trim();
                if let Ok(len) = written {
                    info!(
                        entries = len,
                        build_ms = started.elapsed().as_millis() as u64,
                        "journal compaction: snapshot written"
                    );
                }
                written
            });
        match thread {
            Ok(thread) => {
                // The old journal stays as it is, for the thread; its file
                // is closed off the loop: started by truncating the one
                // before, it is written out at its close (ext4's
                // auto_da_alloc), 200 ms of the loop at a million bindings.
                Replaced(None, self.journal.replace(rotated)).release();
                self.entries = 0;
                self.writing = Some(Writing { generation, thread });
            }
            Err(e) => {
                // `.journal.next` holds its first line only, and a later
                // rotation or snapshot replaces it.
                warn!("cannot start writing the snapshot: {e}");
            }
        }
    }

    /// Takes up the compaction's snapshot once its thread is done (or, with
    /// `wait`, waits for it).
    fn settle(&mut self, wait: bool) -> bool {
        if !wait
            && !self
                .writing
                .as_ref()
                .is_some_and(|w| w.thread.is_finished())
        {
            return false;
        }
        let Some(w) = self.writing.take() else {
            return false;
        };
        let written = w
            .thread
            .join()
            .unwrap_or_else(|_| Err("the thread writing it panicked".into()));
        let jpath = journal_path(&self.path);
        let jnext = record::beside(&jpath, ".next");
        // The snapshot and journal the renames replace are released by a
        // thread of their own: the last reference to a file of hundreds of
        // megabytes frees it then and there (on a disk mounted with
        // `discard`, a synchronous discard): half a second of the loop
        // at a million bindings.
        let replaced = Replaced(File::open(&self.path).ok(), File::open(&jpath).ok());
        // The open journal is `.journal.next`'s file, renamed, not closed.
        // The old journal is removed first: renamed over it, the file the
        // loop is appending to would be written out at the rename
        // (auto_da_alloc), in the loop. (Killed between the two, the new
        // snapshot and `.journal.next` stand.)
        let taken = written.and_then(|len| {
            std::fs::rename(record::beside(&self.path, ".next"), &self.path)
                .and_then(|()| match std::fs::remove_file(&jpath) {
                    Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(e),
                    _ => std::fs::rename(&jnext, &jpath),
                })
                .map(|()| len)
                .map_err(|e| e.to_string())
        });
        // Even on failure: a later snapshot's generation is above the
        // rotated journal's.
        self.generation = w.generation;
        match taken {
            Ok(len) => self.snapshot_len = len,
            Err(e) => {
                // The old snapshot and both journals stand, or the new
                // snapshot and `.journal.next` do: the next save writes
                // everything.
                warn!(state_file = %self.path.display(), "cannot take up the new snapshot: {e}");
                self.journal = None;
            }
        }
        replaced.release();
        true
    }

    /// Replaces the record with everything, and starts a new journal.
    pub fn snapshot(&mut self, cache: SavedCache, kernel: KernelRecord) {
        // Superseded: a compaction under way is taken up (the generations
        // stay in order), then this snapshot replaces it.
        self.settle(true);
        Replaced(None, self.journal.take()).release();
        self.generation += 1;
        self.snapshot_len = cache.bindings.len() + cache.nodes.len();
        let r = HaRecord::new(self.home_agent, cache, kernel, self.generation);
        if !save(&self.path, &r) {
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
                // A rotated journal left by a compaction that failed is
                // older than this snapshot.
                let _ = std::fs::remove_file(record::beside(&jpath, ".next"));
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
    }

    /// Takes up the compaction's snapshot if its thread is done (the
    /// daemon asks before each save); whether there was one.
    pub fn take_up(&mut self) -> bool {
        self.settle(false)
    }
}

/// A snapshot and a journal replaced, still open.
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
        r.snapshot(
            cache(vec![binding(1, 1), binding(2, 1)], vec![node(257, 1)]),
            KernelRecord::default(),
        );
        let last = MIN_JOURNAL as u64 + 1;
        for i in 2..=last {
            assert!(!r.wants_compaction(), "{i}");
            r.append(&[Entry::Binding(binding(1, i))]);
        }
        r.append(&[Entry::Unbound(Ipv4Addr::new(10, 1, 0, 2))]);
        assert!(r.wants_compaction() && !r.wants_snapshot());
        // The loop rotates the journal and appends on meanwhile; the
        // snapshot is built from the files in the background.
        r.compact();
        assert!(!r.wants_compaction(), "one compaction at a time");
        r.append(&[Entry::Binding(binding(3, 1)), Entry::Node(node(257, 9))]);
        // Before the new snapshot is taken up, the old one and both
        // journals hold everything; after, the new one and its journal do.
        let (c, _, newest) = load(&path, HA, max_len(10));
        assert_eq!(newest, 2, "the rotated journal's generation");
        let c = c.unwrap();
        assert_eq!(c.bindings, [binding(1, last), binding(3, 1)]);
        assert_eq!(c.nodes, [node(257, 9)]);
        r.settle(true);
        assert_eq!(r.generation, 2);
        let snapshot: HaRecord = record::read_up_to(&path, max_len(10)).unwrap().unwrap();
        assert_eq!(snapshot.generation, 2);
        assert_eq!(
            snapshot.cache.bindings,
            [binding(1, last)],
            "the old snapshot with the old journal applied"
        );
        assert_eq!(snapshot.cache.nodes, [node(257, 1)]);
        assert_eq!(r.snapshot_len, 2);
        assert_eq!(
            r.entries, 2,
            "the new journal holds what followed the rotation"
        );
        r.append(&[Entry::Binding(binding(4, 1))]);
        let (c, _, newest) = load(&path, HA, max_len(10));
        assert_eq!(newest, 2);
        assert_eq!(
            c.unwrap().bindings,
            [binding(1, last), binding(3, 1), binding(4, 1)]
        );
        assert!(!record::beside(&journal_path(&path), ".next").exists());
    }

    #[test]
    fn a_kill_at_any_point_of_a_compaction_loses_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("ha.state");
        let jpath = journal_path(&path);
        let jnext = record::beside(&jpath, ".next");
        let next = record::beside(&path, ".next");
        let mut r = Record::new(&path, HA, 0);
        r.snapshot(cache(vec![binding(1, 1)], vec![]), KernelRecord::default());
        r.append(&[Entry::Binding(binding(1, 2))]);
        r.compact();
        r.append(&[Entry::Binding(binding(2, 1))]);
        let all = [binding(1, 2), binding(2, 1)];
        // Each point a kill may leave; `load` gives everything promised.
        let w = r.writing.take().unwrap();
        w.thread.join().unwrap().unwrap();
        let written = std::fs::read(&next).unwrap();
        // The snapshot half written.
        record::write_new(&next, &written[..written.len() / 2]).unwrap();
        assert_eq!(load(&path, HA, max_len(10)).0.unwrap().bindings, all);
        // Written, not yet renamed.
        record::write_new(&next, &written).unwrap();
        assert_eq!(load(&path, HA, max_len(10)).0.unwrap().bindings, all);
        // Only the snapshot renamed into place.
        std::fs::rename(&next, &path).unwrap();
        let (c, _, newest) = load(&path, HA, max_len(10));
        assert_eq!(newest, 2);
        assert_eq!(c.unwrap().bindings, all);
        // The old journal removed.
        std::fs::remove_file(&jpath).unwrap();
        let (c, _, newest) = load(&path, HA, max_len(10));
        assert_eq!(newest, 2);
        assert_eq!(c.unwrap().bindings, all);
        // Both renamed.
        std::fs::rename(&jnext, &jpath).unwrap();
        let (c, _, newest) = load(&path, HA, max_len(10));
        assert_eq!(newest, 2);
        assert_eq!(c.unwrap().bindings, all);
    }

    #[test]
    fn entries_apply_in_order_by_key() {
        let mut m = Merge::new(
            cache(vec![binding(3, 1), binding(1, 1), binding(3, 2)], vec![]),
            KernelRecord::default(),
        );
        for e in [
            Entry::Unbound(Ipv4Addr::new(10, 1, 0, 1)),
            Entry::Binding(binding(2, 1)),
            Entry::Binding(binding(1, 3)),
            Entry::Unbound(Ipv4Addr::new(10, 1, 0, 2)),
            Entry::Unbound(Ipv4Addr::new(10, 1, 0, 9)),
        ] {
            m.apply(e);
        }
        let (c, _) = m.finish();
        assert_eq!(c.bindings, [binding(1, 3), binding(3, 2)]);
    }

    #[test]
    fn a_rotation_cut_short_in_its_first_line_is_no_journal() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("ha.state");
        let mut r = Record::new(&path, HA, 0);
        r.snapshot(cache(vec![binding(1, 1)], vec![]), KernelRecord::default());
        r.append(&[Entry::Binding(binding(1, 2))]);
        let jnext = record::beside(&journal_path(&path), ".next");
        record::write_new(&jnext, b"{\"continu").unwrap();
        let (c, _, newest) = load(&path, HA, max_len(10));
        assert_eq!(newest, 1);
        assert_eq!(c.unwrap().bindings, [binding(1, 2)]);
    }

    #[test]
    fn a_snapshot_after_a_failed_compaction_supersedes_its_journal() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("ha.state");
        let mut r = Record::new(&path, HA, 0);
        r.snapshot(cache(vec![binding(1, 1)], vec![]), KernelRecord::default());
        // The journal the thread reads is gone: the compaction fails.
        std::fs::remove_file(journal_path(&path)).unwrap();
        r.compact();
        r.append(&[Entry::Binding(binding(2, 1))]);
        r.settle(true);
        assert!(r.wants_snapshot(), "the next save writes everything");
        r.snapshot(
            cache(vec![binding(1, 1), binding(2, 1)], vec![]),
            KernelRecord::default(),
        );
        assert_eq!(r.generation, 3, "above the rotated journal's");
        assert!(!record::beside(&journal_path(&path), ".next").exists());
        let (c, _, newest) = load(&path, HA, max_len(10));
        assert_eq!(newest, 3);
        assert_eq!(c.unwrap().bindings, [binding(1, 1), binding(2, 1)]);
    }
}
