//! A daemon's record of itself under /run, for its next instance (issue
//! 13): what it installed in the kernel, the sysctls' values before it
//! changed them and, for mip4-ha, its binding cache. It outlives the
//! process (SIGKILL included), not the machine: /run is a tmpfs, so
//! nothing is synced to disk.
//!
//! Written atomically (a temporary file beside it, renamed over it) and
//! 0600. Read back only when it is a regular file of this user that no
//! one else may read or write: what the record says is acted on (tunnels,
//! routes, sysctls), so it is believed no more than the configuration.

use std::fs;
use std::io::{self, Read, Write};
use std::os::unix::fs::{MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use serde::de::DeserializeOwned;
use serde::Serialize;

/// Larger than any record of a real deployment; a bigger file is not ours.
const MAX_LEN: u64 = 16 << 20;

/// Replaces the record at `path` with `value`, atomically.
pub fn write<T: Serialize>(path: &Path, value: &T) -> io::Result<()> {
    let text = serde_json::to_vec_pretty(value).map_err(io::Error::other)?;
    replace(path, &text)
}

/// [`write`] without the indentation, for records that may be large.
pub fn write_compact<T: Serialize>(path: &Path, value: &T) -> io::Result<()> {
    let text = serde_json::to_vec(value).map_err(io::Error::other)?;
    replace(path, &text)
}

/// Opens `path` for appending, made 0600 if it is new; `truncate` starts
/// it empty.
pub fn open_append(path: &Path, truncate: bool) -> io::Result<fs::File> {
    let f = fs::OpenOptions::new()
        .append(!truncate)
        .write(true)
        .create(true)
        .truncate(truncate)
        .mode(0o600)
        .open(path)?;
    f.set_permissions(fs::Permissions::from_mode(0o600))?;
    Ok(f)
}

fn replace(path: &Path, text: &[u8]) -> io::Result<()> {
    let tmp = beside(path, ".new");
    write_new(&tmp, text)?;
    fs::rename(&tmp, path)
}

/// `path` with `suffix` appended to its name.
pub fn beside(path: &Path, suffix: &str) -> PathBuf {
    let mut p = path.as_os_str().to_owned();
    p.push(suffix);
    PathBuf::from(p)
}

/// Writes `text` to `path` (created or emptied, 0600), to be renamed over
/// a record once complete.
pub fn write_new(path: &Path, text: &[u8]) -> io::Result<()> {
    let mut f = fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)?;
    // A file left by someone else with wider permissions keeps them on
    // open: set them again.
    f.set_permissions(fs::Permissions::from_mode(0o600))?;
    f.write_all(text)
}

/// Why a record was not taken up.
#[derive(Debug, thiserror::Error)]
pub enum RecordError {
    #[error("{0}: {1}")]
    Io(String, #[source] io::Error),
    #[error("{0}: not trusted: {1}")]
    Untrusted(String, &'static str),
    #[error("{0}: not a record of this daemon: {1}")]
    Invalid(String, String),
}

/// The record at `path`: `Ok(None)` when there is none (a first start).
pub fn read<T: DeserializeOwned>(path: &Path) -> Result<Option<T>, RecordError> {
    read_up_to(path, MAX_LEN)
}

/// [`read`], for a record that may be up to `max_len` bytes.
pub fn read_up_to<T: DeserializeOwned>(
    path: &Path,
    max_len: u64,
) -> Result<Option<T>, RecordError> {
    let Some(text) = read_bytes(path, max_len)? else {
        return Ok(None);
    };
    serde_json::from_slice(&text)
        .map(Some)
        .map_err(|e| RecordError::Invalid(path.display().to_string(), e.to_string()))
}

/// The bytes of the file at `path`, if it may be believed as a record
/// (see the module's comment); `Ok(None)` when there is none.
pub fn read_bytes(path: &Path, max_len: u64) -> Result<Option<Vec<u8>>, RecordError> {
    let Some(mut f) = open_trusted(path, max_len)? else {
        return Ok(None);
    };
    let mut text = Vec::with_capacity(f.metadata().map_or(0, |m| m.len() as usize));
    f.read_to_end(&mut text)
        .map(|_| Some(text))
        .map_err(|e| RecordError::Io(path.display().to_string(), e))
}

/// The file at `path` opened for reading, if it may be believed as a
/// record (see the module's comment); `Ok(None)` when there is none.
pub fn open_trusted(path: &Path, max_len: u64) -> Result<Option<fs::File>, RecordError> {
    let name = || path.display().to_string();
    let meta = match fs::symlink_metadata(path) {
        Ok(m) => m,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(RecordError::Io(name(), e)),
    };
    if !meta.file_type().is_file() {
        return Err(RecordError::Untrusted(name(), "not a regular file"));
    }
    if meta.uid() != nix::unistd::geteuid().as_raw() {
        return Err(RecordError::Untrusted(name(), "owned by another user"));
    }
    if meta.mode() & 0o077 != 0 {
        return Err(RecordError::Untrusted(
            name(),
            "group or others may read or write it (must be 0600)",
        ));
    }
    if meta.len() > max_len {
        return Err(RecordError::Untrusted(
            name(),
            "larger than any record of this daemon",
        ));
    }
    fs::File::open(path)
        .map(Some)
        .map_err(|e| RecordError::Io(name(), e))
}

/// A record that is not taken up: one error line naming why, and the file
/// set aside; the daemon starts as on a first start.
pub fn refused(path: &Path, why: &str) {
    let aside = set_aside(path)
        .map(|p| p.display().to_string())
        .unwrap_or_else(|e| format!("not moved: {e}"));
    tracing::error!(set_aside = %aside, "state file not taken up, starting afresh: {why}");
}

/// Moves a record that was not taken up aside (`.rejected`), for the
/// operator, so that the next write does not destroy the evidence.
pub fn set_aside(path: &Path) -> io::Result<PathBuf> {
    let mut aside = path.as_os_str().to_owned();
    aside.push(".rejected");
    let aside = PathBuf::from(aside);
    fs::rename(path, &aside)?;
    Ok(aside)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, PartialEq, serde::Serialize, serde::Deserialize)]
    struct R {
        n: u32,
    }

    #[test]
    fn written_0600_and_read_back() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("x.state");
        assert!(read::<R>(&p).unwrap().is_none(), "no record: first start");
        write(&p, &R { n: 7 }).unwrap();
        let mode = fs::metadata(&p).unwrap().mode() & 0o777;
        assert_eq!(mode, 0o600);
        assert_eq!(read::<R>(&p).unwrap(), Some(R { n: 7 }));
        write(&p, &R { n: 8 }).unwrap();
        assert_eq!(read::<R>(&p).unwrap(), Some(R { n: 8 }));
        assert!(!dir.path().join("x.state.new").exists());
    }

    #[test]
    fn corrupt_foreign_or_exposed_records_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("x.state");
        write(&p, &R { n: 7 }).unwrap();
        fs::write(&p, b"{\"n\": 7").unwrap();
        assert!(matches!(read::<R>(&p), Err(RecordError::Invalid(..))));
        fs::write(&p, b"{\"other\": 1}").unwrap();
        assert!(matches!(read::<R>(&p), Err(RecordError::Invalid(..))));
        let aside = set_aside(&p).unwrap();
        assert!(aside.exists() && !p.exists());
        write(&p, &R { n: 7 }).unwrap();
        fs::set_permissions(&p, fs::Permissions::from_mode(0o644)).unwrap();
        let e = read::<R>(&p).unwrap_err();
        assert!(e.to_string().contains("must be 0600"), "{e}");
        fs::remove_file(&p).unwrap();
        std::os::unix::fs::symlink(&aside, &p).unwrap();
        assert!(matches!(read::<R>(&p), Err(RecordError::Untrusted(..))));
    }
}
