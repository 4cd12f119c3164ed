//! The C ABI that the strongSwan shim calls (`include/mip4.h`); the only
//! `unsafe` code of the project.
//!
//! Every exported function checks its pointers, copies what it needs out
//! of the C structs and wraps its body in `catch_unwind`: no panic crosses
//! into charon. The hooks only hand an [`Input`] to the bridge thread.

use std::ffi::{c_char, c_int, CStr, CString};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::PathBuf;
use std::sync::Mutex;

use crate::bridge::proto::{
    Action, ActionStatus, CharonInterfaces, Endpoint, Event, IkeSa, IkeState,
};
use crate::bridge::{Bridge, Charon, Handle, Input, Settings};

/// bindgen's rendering of include/mip4.h.
#[allow(
    non_camel_case_types,
    non_upper_case_globals,
    dead_code,
    clippy::all,
    clippy::pedantic
)]
pub mod abi {
    include!(concat!(env!("OUT_DIR"), "/mip4_abi.rs"));
}

use abi::{mip4_addr_t, mip4_event_t, mip4_settings_t, mip4_shim_ops_t};

/// The shim's function pointers, as a [`Charon`].
struct ShimCharon {
    log: unsafe extern "C" fn(c_int, *const c_char),
    request: unsafe extern "C" fn(u64, u32, *const c_char) -> c_int,
}

impl Charon for ShimCharon {
    fn log(&self, level: u8, msg: &str) {
        let msg = CString::new(msg.replace('\0', " ")).unwrap_or_default();
        // SAFETY: the shim's log copies the NUL-terminated string during
        // the call; msg outlives it.
        unsafe { (self.log)(c_int::from(level), msg.as_ptr()) };
    }

    fn request(&self, id: u64, action: &Action) -> bool {
        let kind = match action {
            Action::Initiate { .. } => abi::MIP4_ACT_INITIATE,
            Action::Terminate { .. } => abi::MIP4_ACT_TERMINATE,
            Action::QueryPath { .. } => abi::MIP4_ACT_QUERY_PATH,
            Action::Roam { .. } => abi::MIP4_ACT_ROAM,
        };
        let Ok(name) = CString::new(action.connection()) else {
            return false;
        };
        // SAFETY: the shim copies name into its job before returning.
        unsafe { (self.request)(id, kind, name.as_ptr()) == 0 }
    }
}

/// The bridge between init and run, and its handle until stop.
struct Slot {
    handle: Handle,
    bridge: Option<Bridge<ShimCharon>>,
}

static SLOT: Mutex<Option<Slot>> = Mutex::new(None);

fn slot() -> std::sync::MutexGuard<'static, Option<Slot>> {
    // A panic while holding the lock cannot leave Slot inconsistent (it is
    // replaced whole), so a poisoned lock is still usable.
    SLOT.lock().unwrap_or_else(|e| e.into_inner())
}

/// Runs f, turning a panic into `default`.
fn guard<T>(default: T, f: impl FnOnce() -> T) -> T {
    catch_unwind(AssertUnwindSafe(f)).unwrap_or(default)
}

/// A C string that may be NULL.
///
/// # Safety
/// p is NULL or points to a NUL-terminated string valid for the call.
unsafe fn c_str(p: *const c_char) -> Option<String> {
    if p.is_null() {
        return None;
    }
    // SAFETY: per the function's contract.
    Some(unsafe { CStr::from_ptr(p) }.to_string_lossy().into_owned())
}

/// A fixed-size, NUL-terminated char array (not trusted to hold a NUL).
fn c_array(a: &[c_char]) -> String {
    let bytes: Vec<u8> = a
        .iter()
        .take_while(|&&c| c != 0)
        .map(|&c| c as u8)
        .collect();
    String::from_utf8_lossy(&bytes).into_owned()
}

fn addr(a: &mip4_addr_t) -> Option<IpAddr> {
    match a.family {
        4 => {
            let b: [u8; 4] = a.addr[..4].try_into().ok()?;
            Some(IpAddr::V4(Ipv4Addr::from(b)))
        }
        6 => Some(IpAddr::V6(Ipv6Addr::from(a.addr))),
        _ => None,
    }
}

fn endpoint(a: &mip4_addr_t) -> Option<Endpoint> {
    addr(a).map(|addr| Endpoint { addr, port: a.port })
}

fn ike_sa(ev: &mip4_event_t) -> IkeSa {
    let count = (ev.vip_count as usize).min(ev.vips.len());
    let ifname = c_array(&ev.local_ifname);
    IkeSa {
        name: c_array(&ev.name),
        unique_id: ev.unique_id,
        local: endpoint(&ev.local),
        remote: endpoint(&ev.remote),
        local_ifname: (!ifname.is_empty()).then_some(ifname),
        vips: ev.vips[..count].iter().filter_map(addr).collect(),
        // Roam has no IKE_SA, hence nothing to say about MOBIKE.
        mobike: (ev.kind != abi::MIP4_EV_ROAM).then_some(ev.mobike != 0),
        child_sas: (ev.kind != abi::MIP4_EV_ROAM).then_some(ev.child_sas),
    }
}

/// The hook's copied data as an [`Event`]; None for an unknown kind.
fn event(ev: &mip4_event_t) -> Option<Event> {
    let flag = ev.flag != 0;
    let ike = ike_sa(ev);
    Some(match ev.kind {
        abi::MIP4_EV_HANDLE_VIPS => Event::HandleVips { ike, handle: flag },
        abi::MIP4_EV_ASSIGN_VIPS => Event::AssignVips { ike, assign: flag },
        abi::MIP4_EV_IKE_UPDATE => Event::IkeUpdate {
            ike,
            new_local: endpoint(&ev.new_local),
            new_remote: endpoint(&ev.new_remote),
        },
        abi::MIP4_EV_IKE_UPDOWN => Event::IkeUpdown { ike, up: flag },
        abi::MIP4_EV_IKE_REKEY => Event::IkeRekey {
            ike,
            new_unique_id: ev.new_unique_id,
        },
        abi::MIP4_EV_IKE_REESTABLISH_PRE => Event::IkeReestablishPre {
            ike,
            new_unique_id: ev.new_unique_id,
        },
        abi::MIP4_EV_IKE_REESTABLISH_POST => Event::IkeReestablishPost {
            ike,
            new_unique_id: ev.new_unique_id,
            new_local: endpoint(&ev.new_local),
            new_remote: endpoint(&ev.new_remote),
            initiated: flag,
        },
        abi::MIP4_EV_CHILD_UPDOWN => Event::ChildUpdown {
            ike,
            child: c_array(&ev.child_name),
            up: flag,
        },
        abi::MIP4_EV_ROAM => Event::Roam { address: flag },
        abi::MIP4_EV_IKE_CONNECTING => Event::IkeState {
            ike,
            state: IkeState::Connecting,
        },
        abi::MIP4_EV_IKE_DESTROYING => Event::IkeState {
            ike,
            state: IkeState::Destroying,
        },
        _ => return None,
    })
}

fn status(s: u32) -> ActionStatus {
    match s {
        abi::MIP4_ACT_OK => ActionStatus::Ok,
        abi::MIP4_ACT_NOT_FOUND => ActionStatus::NotFound,
        abi::MIP4_ACT_UNSUPPORTED => ActionStatus::Unsupported,
        _ => ActionStatus::Failed,
    }
}

/// See include/mip4.h.
///
/// # Safety
/// ops and settings are NULL or valid for the call; settings' strings are
/// NULL or NUL-terminated.
#[no_mangle]
pub unsafe extern "C" fn mip4_bridge_init(
    abi_version: u32,
    ops: *const mip4_shim_ops_t,
    settings: *const mip4_settings_t,
) -> c_int {
    guard(-1, || {
        if abi_version != abi::MIP4_ABI_VERSION || ops.is_null() || settings.is_null() {
            return -1;
        }
        // SAFETY: checked non-NULL; valid per the contract.
        let (ops, settings) = unsafe { (&*ops, &*settings) };
        let (Some(log), Some(request)) = (ops.log, ops.request) else {
            return -1;
        };
        // SAFETY: NULL or NUL-terminated per the contract.
        let (socket, connections, interfaces_use, interfaces_ignore) = unsafe {
            (
                c_str(settings.socket),
                c_str(settings.connections),
                c_str(settings.interfaces_use),
                c_str(settings.interfaces_ignore),
            )
        };
        let defaults = Settings::default();
        let settings = Settings {
            socket: socket.map(PathBuf::from).unwrap_or(defaults.socket),
            connections: Settings::parse_connections(&connections.unwrap_or_default()),
            loglevel: settings.loglevel.clamp(-1, 4).max(0) as u8,
            charon: CharonInterfaces {
                interfaces_use,
                interfaces_ignore,
            },
            ..defaults
        };
        let (bridge, handle) = Bridge::new(settings, ShimCharon { log, request });
        *slot() = Some(Slot {
            handle,
            bridge: Some(bridge),
        });
        0
    })
}

/// See include/mip4.h.
#[no_mangle]
pub extern "C" fn mip4_bridge_run() {
    guard((), || {
        let bridge = slot().as_mut().and_then(|s| s.bridge.take());
        if let Some(bridge) = bridge {
            name_this_thread(c"mip4-bridge");
            bridge.run();
        }
    })
}

/// Names the calling thread (charon's thread that runs the bridge), so
/// that its CPU time reads apart from charon's own in
/// /proc/PID/task/TID/comm (`lab::cpu`, the kernel tier's per-move cost).
fn name_this_thread(name: &std::ffi::CStr) {
    // SAFETY: PR_SET_NAME reads a NUL-terminated string of at most 16
    // bytes (longer ones are cut) from a pointer valid for the call.
    unsafe {
        libc::prctl(libc::PR_SET_NAME, name.as_ptr());
    }
}

/// See include/mip4.h.
#[no_mangle]
pub extern "C" fn mip4_bridge_stop(timeout_ms: u32) -> c_int {
    guard(-1, || {
        let Some(slot) = slot().take() else {
            return 0;
        };
        if slot
            .handle
            .stop(std::time::Duration::from_millis(timeout_ms.into()))
        {
            0
        } else {
            -1
        }
    })
}

/// Hands an input to the bridge if there is one.
fn send(input: Input) {
    if let Some(slot) = slot().as_ref() {
        slot.handle.send(input);
    }
}

/// See include/mip4.h.
///
/// # Safety
/// event is NULL or points to a valid mip4_event_t for the call.
#[no_mangle]
pub unsafe extern "C" fn mip4_event(event: *const mip4_event_t) {
    guard((), || {
        // SAFETY: NULL or valid per the contract.
        let Some(ev) = (unsafe { event.as_ref() }) else {
            return;
        };
        if let Some(ev) = self::event(ev) {
            send(Input::Event(ev));
        }
    })
}

/// See include/mip4.h.
///
/// # Safety
/// path is NULL or points to a valid mip4_event_t for the call.
#[no_mangle]
pub unsafe extern "C" fn mip4_action_done(id: u64, status: u32, path: *const mip4_event_t) {
    guard((), || {
        // SAFETY: NULL or valid per the contract.
        let path = unsafe { path.as_ref() }.map(ike_sa);
        send(Input::ActionDone {
            id,
            status: self::status(status),
            path,
        });
    })
}

#[cfg(mip4_shim)]
extern "C" {
    /// The shim's plugin constructor (strongswan-plugin/mip4_plugin.c).
    fn mip4_shim_plugin_create() -> *mut std::ffi::c_void;
    /// charon's log, usable before the plugin exists.
    fn mip4_shim_log(level: c_int, msg: *const c_char);
}

/// The strongSwan release whose headers the shim was compiled against
/// (build.rs checked it is the installed charon's), behind a marker that
/// tests/plugin_load.rs finds in the library.
#[cfg(mip4_shim)]
static HEADERS: &str = concat!("mip4-strongswan-headers=", env!("MIP4_STRONGSWAN_VERSION"));

/// The strongSwan version of the running daemon, from its executable
/// (libcharon has no version call of its own): charon and charon-cmd log
/// "...(strongSwan VERSION, ..." with the version in the literal;
/// charon-systemd (Debian's default) formats "strongSwan %s" with VERSION,
/// which then is a string of its own, the executable's only bare
/// `X.Y.Z` one. Two different bare versions: unknown.
#[cfg_attr(not(mip4_shim), allow(dead_code))]
fn running_strongswan_version(exe: &[u8]) -> Option<String> {
    const KEY: &[u8] = b"(strongSwan ";
    if let Some(at) = exe.windows(KEY.len()).position(|w| w == KEY) {
        let v: String = exe[at + KEY.len()..]
            .iter()
            .take_while(|b| b.is_ascii_digit() || **b == b'.')
            .map(|&b| char::from(b))
            .collect();
        return (!v.is_empty()).then_some(v);
    }
    let is_version = |s: &[u8]| {
        let parts: Vec<&[u8]> = s.split(|&b| b == b'.').collect();
        parts.len() == 3
            && parts
                .iter()
                .all(|p| (1..=3).contains(&p.len()) && p.iter().all(u8::is_ascii_digit))
    };
    let mut found: Option<&[u8]> = None;
    for s in exe.split(|&b| b == 0).filter(|s| is_version(s)) {
        match found {
            Some(f) if f != s => return None,
            _ => found = Some(s),
        }
    }
    found.map(|s| String::from_utf8_lossy(s).into_owned())
}

/// Whether the plugin may load into this daemon: its strongSwan must be
/// the release the shim was compiled for (another release may lay out
/// ike_sa_t and the bus differently). On refusal, says why with both
/// versions.
#[cfg_attr(not(mip4_shim), allow(dead_code))]
fn version_check(headers: &str, exe: std::io::Result<Vec<u8>>) -> Result<(), String> {
    let exe = exe.map_err(|e| {
        format!("cannot read charon's executable ({e}) to check its version: not loading")
    })?;
    match running_strongswan_version(&exe) {
        Some(v) if v == headers => Ok(()),
        Some(v) => Err(format!(
            "built against strongSwan {headers} headers, but this charon is strongSwan {v}: \
             not loading (rebuild the plugin for {v})"
        )),
        None => Err(format!(
            "cannot tell this charon's strongSwan version (built for {headers}): not loading"
        )),
    }
}

/// The plugin constructor charon's loader looks up by name
/// (`<name>_plugin_create`). It lives here rather than in the shim because
/// a Rust cdylib exports only Rust-defined symbols. It returns NULL (charon
/// then skips the plugin) when charon's version differs from the headers'.
#[cfg(mip4_shim)]
#[no_mangle]
pub extern "C" fn mip4_plugin_create() -> *mut std::ffi::c_void {
    guard(std::ptr::null_mut(), || {
        let headers = std::hint::black_box(HEADERS);
        let headers = headers.split_once('=').map_or(headers, |(_, v)| v);
        if let Err(why) = version_check(headers, std::fs::read("/proc/self/exe")) {
            let msg = CString::new(why).unwrap_or_default();
            // SAFETY: the shim's log copies the NUL-terminated string
            // during the call; msg outlives it.
            unsafe { mip4_shim_log(1, msg.as_ptr()) };
            return std::ptr::null_mut();
        }
        // SAFETY: a plain constructor without arguments; charon calls it
        // once its `lib` and `charon` globals are set up.
        unsafe { mip4_shim_plugin_create() }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v4(a: [u8; 4], port: u16) -> mip4_addr_t {
        let mut addr = [0u8; 16];
        addr[..4].copy_from_slice(&a);
        mip4_addr_t {
            family: 4,
            addr,
            port,
        }
    }

    fn name<const N: usize>(s: &str) -> [c_char; N] {
        let mut out = [0 as c_char; N];
        for (o, b) in out.iter_mut().zip(s.bytes()) {
            *o = b as c_char;
        }
        out
    }

    #[test]
    fn copied_hook_data_becomes_the_event() {
        let mut ev = mip4_event_t {
            kind: abi::MIP4_EV_HANDLE_VIPS,
            flag: 1,
            unique_id: 4,
            name: name("home"),
            local: v4([192, 0, 2, 10], 4500),
            remote: v4([198, 51, 100, 1], 4500),
            local_ifname: name("eth0"),
            vip_count: 1,
            ..Default::default()
        };
        ev.vips[0] = v4([10, 200, 0, 1], 0);
        let Some(Event::HandleVips { ike, handle: true }) = event(&ev) else {
            panic!("{:?}", event(&ev));
        };
        assert_eq!(ike.name, "home");
        assert_eq!(ike.unique_id, 4);
        assert_eq!(ike.local.unwrap().addr, IpAddr::from([192, 0, 2, 10]));
        assert_eq!(ike.remote.unwrap().port, 4500);
        assert_eq!(ike.local_ifname.as_deref(), Some("eth0"));
        assert_eq!(ike.vips, vec![IpAddr::from([10, 200, 0, 1])]);
    }

    #[test]
    fn the_plugin_loads_only_into_the_strongswan_it_was_built_for() {
        let charon = b"\0Starting IKE charon daemon (strongSwan 5.9.8, %s %s, %s)\0".to_vec();
        assert_eq!(
            running_strongswan_version(&charon).as_deref(),
            Some("5.9.8")
        );
        assert_eq!(version_check("5.9.8", Ok(charon.clone())), Ok(()));
        let err = version_check("5.9.7", Ok(charon)).unwrap_err();
        assert!(err.contains("5.9.7") && err.contains("5.9.8"), "{err}");
        assert!(version_check("5.9.8", Ok(b"no version here".to_vec())).is_err());
        // charon-systemd: "strongSwan %s" and VERSION apart.
        let systemd = b"\0STATUS=Starting charon-systemd, strongSwan %s, %s\x005.9.8\0".to_vec();
        assert_eq!(version_check("5.9.8", Ok(systemd.clone())), Ok(()));
        let err = version_check("5.9.7", Ok(systemd)).unwrap_err();
        assert!(err.contains("this charon is strongSwan 5.9.8"), "{err}");
        let two = b"\x005.9.8\0\x005.9.9\0".to_vec();
        assert!(version_check("5.9.8", Ok(two)).is_err());
        assert!(version_check("5.9.8", Err(std::io::ErrorKind::NotFound.into())).is_err());
    }

    #[test]
    fn hostile_c_data_is_bounded() {
        // No NUL in the name, a vip_count beyond the array, unknown family
        // and kind: bounded copies, no panic.
        let ev = mip4_event_t {
            kind: abi::MIP4_EV_ASSIGN_VIPS,
            name: [b'x' as c_char; abi::MIP4_NAME_LEN as usize],
            vip_count: u32::MAX,
            local: mip4_addr_t {
                family: 9,
                ..Default::default()
            },
            ..Default::default()
        };
        let ike = ike_sa(&ev);
        assert_eq!(ike.name.len(), abi::MIP4_NAME_LEN as usize);
        assert!(ike.vips.is_empty());
        assert!(ike.local.is_none());
        let unknown = mip4_event_t {
            kind: 999,
            ..Default::default()
        };
        assert!(event(&unknown).is_none());
        // NULL pointers are ignored.
        unsafe {
            mip4_event(std::ptr::null());
            mip4_action_done(1, 0, std::ptr::null());
            assert_eq!(
                mip4_bridge_init(abi::MIP4_ABI_VERSION, std::ptr::null(), std::ptr::null()),
                -1
            );
        }
    }
}
