//! mip4-ha's record of itself (`state_file`, default `ha.state` beside the
//! control socket under /run), written through [`crate::daemons::record`]
//! whenever a binding, a node's replay state or what is installed in the
//! kernel changed, and before the reply that follows such a change
//! leaves. The next instance restores the bindings still within their
//! lifetime and removes what no restored binding owns (issue 13).

use std::net::Ipv4Addr;
use std::path::Path;

use serde::{Deserialize, Serialize};
use tracing::{info, warn};

use super::kernel::KernelRecord;
use crate::daemons::record;
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
}

/// What an earlier instance left: its bindings and replay state, and what
/// it held in the kernel. Empty on a first start, and when the record is
/// corrupt or foreign (logged, and the file set aside for the operator):
/// never a reason not to start.
pub fn load(path: &Path, home_agent: Ipv4Addr) -> (Option<SavedCache>, KernelRecord) {
    let refuse = |why: String| {
        record::refused(path, &format!("{why} (an empty binding cache)"));
        (None, KernelRecord::default())
    };
    let r: HaRecord = match record::read(path) {
        Ok(Some(r)) => r,
        Ok(None) => return (None, KernelRecord::default()),
        Err(e) => return refuse(e.to_string()),
    };
    let where_ = path.display();
    if r.daemon != DAEMON || r.version != VERSION {
        return refuse(format!(
            "{where_}: a record of {} version {}, not of {DAEMON} version {VERSION}",
            r.daemon, r.version
        ));
    }
    if r.home_agent != home_agent {
        return refuse(format!(
            "{where_}: the record of home agent {}, this is {home_agent}",
            r.home_agent
        ));
    }
    info!(state_file = %where_, bindings = r.cache.bindings.len(), "state of the previous instance read");
    (Some(r.cache), r.kernel)
}

/// Replaces the record; a failure is logged and the daemon serves on (its
/// next change tries again).
pub fn save(path: &Path, home_agent: Ipv4Addr, cache: SavedCache, kernel: KernelRecord) {
    let r = HaRecord {
        daemon: DAEMON.to_string(),
        version: VERSION,
        home_agent,
        cache,
        kernel,
    };
    if let Err(e) = record::write(path, &r) {
        warn!(state_file = %path.display(), "cannot save the binding cache: {e}");
    }
}
