/*
 * mip4.h: the C ABI between the strongSwan shim (the C files in strongswan-plugin,
 * built against charon's own headers) and the Rust side of
 * libstrongswan-mip4.so (src/ffi).
 *
 * Direction shim -> Rust: mip4_bridge_init/run/stop, mip4_event,
 * mip4_action_done. Direction Rust -> shim: the function pointers in
 * mip4_shim_ops_t, handed over once in mip4_bridge_init.
 *
 * Everything crossing this boundary is plain data copied out of charon's
 * objects: Rust never sees an ike_sa_t or host_t, so the Rust side does not
 * depend on strongSwan's struct layouts (those are the shim's business, see
 * build.rs for the configure defines that fix them).
 *
 * Copyright (C) the mip4-mobike authors. GPL-2.0-or-later.
 */

#ifndef MIP4_H_
#define MIP4_H_

#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/** Version of this ABI; mip4_bridge_init refuses a shim built for another. */
#define MIP4_ABI_VERSION 4

/** Longest connection/child name copied (including the terminating NUL). */
#define MIP4_NAME_LEN 64
/** Longest interface name copied (IFNAMSIZ). */
#define MIP4_IFNAME_LEN 16
/** Most virtual IPs copied per event. */
#define MIP4_MAX_VIPS 4

/** An IP address and port copied out of a host_t. */
typedef struct mip4_addr_t {
	/** 0: absent, 4: IPv4 (first 4 bytes of addr), 6: IPv6 */
	uint8_t family;
	/** address in network order */
	uint8_t addr[16];
	/** port in host order, 0 if none */
	uint16_t port;
} mip4_addr_t;

/** Which hook produced an event. */
typedef enum mip4_event_kind_t {
	/** listener_t.handle_vips: virtual IPs installed (flag=1) or released
	 *  (flag=0) on the peer receiving them, i.e. the MN's TIA */
	MIP4_EV_HANDLE_VIPS = 1,
	/** listener_t.assign_vips: virtual IPs assigned to (flag=1) or released
	 *  from (flag=0) a peer, i.e. the gateway side */
	MIP4_EV_ASSIGN_VIPS = 2,
	/** listener_t.ike_update: MOBIKE (or NAT-T) moved the IKE_SA;
	 *  local/remote are the old endpoints, new_local/new_remote the new */
	MIP4_EV_IKE_UPDATE = 3,
	/** listener_t.ike_updown: IKE_SA established (flag=1) or deleted (0) */
	MIP4_EV_IKE_UPDOWN = 4,
	/** listener_t.ike_rekey: IKE_SA unique_id rekeyed into new_unique_id */
	MIP4_EV_IKE_REKEY = 5,
	/** listener_t.ike_reestablish_pre: about to reestablish into new_unique_id */
	MIP4_EV_IKE_REESTABLISH_PRE = 6,
	/** listener_t.ike_reestablish_post: reestablished; flag=initiated */
	MIP4_EV_IKE_REESTABLISH_POST = 7,
	/** listener_t.child_updown: CHILD_SA child_name up (flag=1) or down */
	MIP4_EV_CHILD_UPDOWN = 8,
	/** kernel_listener_t.roam: local addresses (flag=1) or routes (0) changed */
	MIP4_EV_ROAM = 9,
	/** listener_t.ike_state_change to IKE_CONNECTING: an IKE_SA of ours
	 *  sends its IKE_SA_INIT (whoever initiated it: the user, NetworkManager,
	 *  start_action or mip4d); flag unused */
	MIP4_EV_IKE_CONNECTING = 10,
	/** listener_t.ike_state_change to IKE_DESTROYING: the IKE_SA goes,
	 *  also one that never came up (which fires no ike_updown); flag unused */
	MIP4_EV_IKE_DESTROYING = 11,
} mip4_event_kind_t;

/** One hook invocation, copied; valid only during the mip4_event call. */
typedef struct mip4_event_t {
	/** a mip4_event_kind_t */
	uint32_t kind;
	/** the hook's boolean (up / handle / assign / initiated / address) */
	uint32_t flag;
	/** IKE_SA unique id (0 for roam) */
	uint32_t unique_id;
	/** the other IKE_SA of rekey/reestablish, else 0 */
	uint32_t new_unique_id;
	/** IKE_SA name, i.e. the connection (peer_cfg) name; NUL-terminated */
	char name[MIP4_NAME_LEN];
	/** CHILD_SA name for child_updown; NUL-terminated */
	char child_name[MIP4_NAME_LEN];
	/** IKE_SA endpoints as the IKE_SA has them when the hook fires */
	mip4_addr_t local;
	mip4_addr_t remote;
	/** new endpoints for ike_update */
	mip4_addr_t new_local;
	mip4_addr_t new_remote;
	/** interface that carries the (new) local endpoint, "" if unknown */
	char local_ifname[MIP4_IFNAME_LEN];
	/** virtual IPs: local ones for handle_vips, the peer's for assign_vips */
	uint32_t vip_count;
	mip4_addr_t vips[MIP4_MAX_VIPS];
	/** 1 if the IKE_SA negotiated MOBIKE (ike_sa's EXT_MOBIKE extension:
	 *  both ends sent MOBIKE_SUPPORTED, RFC 4555 §3.1), else 0; 0 for roam */
	uint32_t mobike;
	/** CHILD_SAs of the IKE_SA installed when the hook fired (0 for roam):
	 *  handle_vips comes before charon installs the first one, and mip4d
	 *  registers the TIA only once one carries it */
	uint32_t child_sas;
} mip4_event_t;

/** Actions mip4d may ask of charon (executed on a charon job). */
typedef enum mip4_action_kind_t {
	/** initiate the named connection (its first child) */
	MIP4_ACT_INITIATE = 1,
	/** terminate every IKE_SA of the named connection */
	MIP4_ACT_TERMINATE = 2,
	/** report the IKE_SA endpoints and local interface of the named
	 *  connection (what a bypass of probes needs) */
	MIP4_ACT_QUERY_PATH = 3,
	/** queue charon's roam job now (what kernel-netlink queues after its
	 *  100 ms roam delay): mip4d saw a usable address first; the name only
	 *  says which connection asks (the job looks at every IKE_SA) */
	MIP4_ACT_ROAM = 4,
} mip4_action_kind_t;

/** Outcome of an action. */
typedef enum mip4_action_status_t {
	MIP4_ACT_OK = 0,
	/** no such connection configured / no IKE_SA of it */
	MIP4_ACT_NOT_FOUND = 1,
	/** charon refused or failed */
	MIP4_ACT_FAILED = 2,
	/** unknown action kind */
	MIP4_ACT_UNSUPPORTED = 3,
} mip4_action_status_t;

/** What the shim lends Rust. Every function is safe to call from the
 *  bridge thread and returns at once. */
typedef struct mip4_shim_ops_t {
	/** log a NUL-terminated line at charon level 0..4 through DBG */
	void (*log)(int level, const char *msg);
	/** queue action `kind` on `name` as charon job; the job reports with
	 *  mip4_action_done(id, ...). Returns 0 if queued, -1 otherwise. */
	int (*request)(uint64_t id, uint32_t kind, const char *name);
} mip4_shim_ops_t;

/** Settings the shim read from charon.plugins.mip4.* */
typedef struct mip4_settings_t {
	/** unix socket of mip4d (charon.plugins.mip4.socket) */
	const char *socket;
	/** space/comma separated connection names to act on, "" = all
	 *  (charon.plugins.mip4.connections) */
	const char *connections;
	/** highest charon level Rust logs at (charon.plugins.mip4.loglevel) */
	int loglevel;
	/** charon's own interface filter as loaded, NULL if unset:
	 *  charon.interfaces_use and charon.interfaces_ignore (comma-separated
	 *  exact names; with interfaces_use set, only those are used) */
	const char *interfaces_use;
	const char *interfaces_ignore;
} mip4_settings_t;

/**
 * Sets up the bridge (copies settings and ops). Returns 0 on success,
 * negative on bad arguments or ABI mismatch. Call once before run.
 */
int mip4_bridge_init(uint32_t abi_version, const mip4_shim_ops_t *ops,
					 const mip4_settings_t *settings);

/** Runs the bridge loop on the calling thread until mip4_bridge_stop. */
void mip4_bridge_run(void);

/**
 * Asks the bridge loop to end and waits up to timeout_ms for it. Returns 0
 * once it has ended (join its thread), -1 if it has not (do not join: the
 * thread ends on its own, every step of it is time-limited).
 */
int mip4_bridge_stop(uint32_t timeout_ms);

/** Hands one hook's copied data to the bridge; never waits for mip4d
 *  (a short lock, bounded memory). */
void mip4_event(const mip4_event_t *event);

/** Reports the outcome of a request; path may be NULL (only for query). */
void mip4_action_done(uint64_t id, uint32_t status, const mip4_event_t *path);

#ifdef __cplusplus
}
#endif

#endif /* MIP4_H_ */
