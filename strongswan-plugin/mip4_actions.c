/*
 * Copyright (C) the mip4-mobike authors. GPL-2.0-or-later.
 */

#include "mip4_actions.h"
#include "mip4_addrwatch.h"
#include "mip4_copy.h"
#include "mip4_update.h"

#include <pthread.h>

#include <daemon.h>
#include <processing/jobs/callback_job.h>
#include <processing/jobs/roam_job.h>

typedef struct mip4_request_t mip4_request_t;

/**
 * One queued request of mip4d.
 */
struct mip4_request_t {
	/** request id, echoed in mip4_action_done() */
	uint64_t id;
	/** mip4_action_kind_t */
	uint32_t kind;
	/** connection name */
	char name[MIP4_NAME_LEN];
	/** a roam's looks at charon's address cache so far */
	int looks;
	/** looks when its current round of quick and fast looks began (a
	 * waiting roam looks again at a new address: address_seen()) */
	int cycle;
	/** when the first look found no path (time_monotonic()) */
	timeval_t waiting;
	/** place in mip4d's order of requests (ask_order()) */
	uint64_t seq;
	/** a roam listed in roams_waiting (claim()) */
	bool listed;
};

/**
 * How many roams roams_waiting lists; one more only looks.
 */
#define ROAMS_WAITING 8

/**
 * Roams waiting for charon's path (later()), each run once by whichever
 * claims it first: its next look, a round of looks at a new address
 * (mip4_actions_address_seen()), or charon's own roam event
 * (mip4_actions_roam_event()). kernel-netlink raises that event
 * ROAM_DELAY (100 ms) after the first address or route change it hears,
 * and its roam job moves the IKE_SA with a path check if the path is
 * known by then: a look due a few ms later lost the move to it, even
 * when mip4d had asked long before (the kernel tier under load).
 */
static pthread_mutex_t waiting_lock = PTHREAD_MUTEX_INITIALIZER;
static struct {
	bool used;
	mip4_request_t roam;
} roams_waiting[ROAMS_WAITING];

/**
 * Under waiting_lock: until when the waiting roams look again after a new
 * address or route (address_seen()): the events of one new network (its
 * address, its routes) start one round of looks, not one each.
 */
static timeval_t relooking_until;

/**
 * How many connections' last terminate order_lock remembers.
 */
#define ORDER_NAMES 16

/**
 * Requests run on charon's thread pool, where a later one may run first,
 * and an initiate waits for its path (later()): a terminate asked
 * meanwhile found no IKE_SA, and the initiate then brought up a VPN mip4d
 * no longer wanted, with nobody to close it (lab: flap on a loaded host,
 * the VPN asked with a probe whose trusted verdict came first). So each
 * request takes its place in mip4d's order when queued; an initiate runs
 * only if no terminate of its connection was asked after it, and runs
 * under order_lock, so a terminate asked later is queued only once the
 * initiate's IKE_SA exists, and finds it.
 */
static pthread_mutex_t order_lock = PTHREAD_MUTEX_INITIALIZER;

/**
 * Under order_lock: the last place given, and the place of the last
 * terminate of each connection (the oldest forgotten past ORDER_NAMES;
 * an initiate older than a forgotten one runs, as before).
 */
static uint64_t order_seq;
static struct {
	char name[MIP4_NAME_LEN];
	uint64_t seq;
} terminated[ORDER_NAMES];

/**
 * Under order_lock: the place of the last terminate asked of name, 0 if
 * none.
 */
static uint64_t terminated_at(const char *name)
{
	int i;

	for (i = 0; i < ORDER_NAMES; i++)
	{
		if (terminated[i].seq && streq(terminated[i].name, name))
		{
			return terminated[i].seq;
		}
	}
	return 0;
}

/**
 * Gives action its place in mip4d's order (the bridge thread queues in
 * that order); a terminate's place is remembered for its connection.
 */
static void ask_order(mip4_request_t *action)
{
	int i, slot = 0;

	pthread_mutex_lock(&order_lock);
	action->seq = ++order_seq;
	if (action->kind == MIP4_ACT_TERMINATE)
	{
		for (i = 0; i < ORDER_NAMES; i++)
		{
			if (streq(terminated[i].name, action->name))
			{
				slot = i;
				break;
			}
			if (terminated[i].seq < terminated[slot].seq)
			{
				slot = i;
			}
		}
		memcpy(terminated[slot].name, action->name, MIP4_NAME_LEN);
		terminated[slot].seq = action->seq;
	}
	pthread_mutex_unlock(&order_lock);
}

/**
 * After its quick looks (below), a roam looks again every ROAM_LOOK_MS for
 * ROAM_FAST_LOOKS looks (100 ms: mip4d asked on the new default route,
 * which charon's cache of addresses may trail by a few ms). One that still
 * finds no path then waits without looking, listed in roams_waiting: mip4d
 * asked when the IKE_SA's address went, before the next network has an
 * address (break before make), and asks again when a default route comes
 * (that request looks as above, and its roam answers this one,
 * report_others()); the plugin's own sight of a new address or route on
 * rtnetlink starts another round of looks (mip4_addrwatch.h: a DHCP
 * lease comes hundreds of ms after the link, and mip4d may read it late);
 * charon's roam event runs it (kernel-netlink's ROAM_DELAY, 100 ms, after
 * the address: roams_waiting), and one last look ends the wait
 * ROAM_WINDOW_MS after the first. Each look is a route
 * lookup in the kernel (kernel-netlink's get_source_addr) and a walk of
 * the IKE_SAs: a look every 10 ms across a gap of a second between
 * networks cost charon tens of ms of the kernel tier's one emulated CPU
 * per move (issue 14 §1).
 */
#define ROAM_LOOK_MS 2
#define ROAM_FAST_LOOKS 50
#define ROAM_WINDOW_MS 2000

/**
 * Every request's first ROAM_QUICK_LOOKS looks come every
 * ROAM_QUICK_LOOK_US (2 ms in all): mip4d and kernel-netlink read the
 * same rtnetlink messages, each on a thread of its own, so charon
 * usually knows the new address well under a millisecond after mip4d
 * asked; a look every 2 ms held the update back by up to 2 ms in the
 * moves where mip4d was first (issue 14 §1). It costs at most
 * ROAM_QUICK_LOOKS route lookups more per request.
 */
#define ROAM_QUICK_LOOK_US 250
#define ROAM_QUICK_LOOKS 8

/**
 * How long one round of looks takes (its quick looks, then its fast ones):
 * a waiting roam's first, or one at a new address (address_seen()).
 */
#define ROAM_ROUND_MS (ROAM_LOOK_MS * ROAM_FAST_LOOKS + 2)

/**
 * charon.plugins.mip4.roam_looks = no: a roam charon has no path for
 * takes no timed look after its first; charon's roam event (or mip4d's
 * next request) runs it, or one last look when ROAM_WINDOW_MS is over.
 * That is what looks that all come late on a loaded host amount to:
 * tests/plugin_hooks.rs uses it to force the roam event's path.
 */
static bool timed_looks(void)
{
	return lib->settings->get_bool(lib->settings,
							"%s.plugins.mip4.roam_looks", TRUE, lib->ns);
}

/**
 * An initiate looks again as often, at most INITIATE_LOOKS times (1 s):
 * kernel-netlink hears of a new address within milliseconds, even on a
 * loaded machine, so this only bounds the wait if it never does.
 */
#define INITIATE_LOOKS 500

/**
 * Initiate the connection's first CHILD_SA (and so its IKE_SA); does not
 * wait for the result, ike_updown/child_updown events report it.
 */
static mip4_action_status_t initiate(char *name)
{
	peer_cfg_t *peer_cfg;
	child_cfg_t *child_cfg = NULL;
	enumerator_t *enumerator;

	peer_cfg = charon->backends->get_peer_cfg_by_name(charon->backends, name);
	if (!peer_cfg)
	{
		return MIP4_ACT_NOT_FOUND;
	}
	enumerator = peer_cfg->create_child_cfg_enumerator(peer_cfg);
	if (enumerator->enumerate(enumerator, &child_cfg))
	{
		child_cfg->get_ref(child_cfg);
	}
	enumerator->destroy(enumerator);
	/* no callback: asynchronous, consumes both references */
	if (charon->controller->initiate(charon->controller, peer_cfg, child_cfg,
									 NULL, NULL, 0, FALSE) != SUCCESS)
	{
		return MIP4_ACT_FAILED;
	}
	return MIP4_ACT_OK;
}

/**
 * Whether host is an IPv6 link-local address (fe80::/10).
 */
static bool link_local(host_t *host)
{
	chunk_t addr = host->get_address(host);

	return host->get_family(host) == AF_INET6 && addr.len == 16 &&
		   addr.ptr[0] == 0xfe && (addr.ptr[1] & 0xc0) == 0x80;
}

/**
 * Whether charon's kernel interface names a source address from which the
 * connection's IKE_SA_INIT can reach its (first) peer. mip4d asks once it
 * sees a global address and a default route on rtnetlink; kernel-netlink
 * hears of them on its own socket, in its own time, and meanwhile names
 * the link's IPv6 link-local address (up since the link came up) for a
 * global peer. charon then sends every IKE_SA_INIT from it, fails
 * ("error writing to socket: Invalid argument") and gives up, and its roam
 * job keeps that path, which it deems valid (lab: ipv6-access-detect).
 */
static bool source_known(char *name)
{
	peer_cfg_t *peer_cfg;
	ike_cfg_t *ike_cfg;
	host_t *other, *src;
	bool known;

	peer_cfg = charon->backends->get_peer_cfg_by_name(charon->backends, name);
	if (!peer_cfg)
	{	/* initiate() reports it */
		return TRUE;
	}
	ike_cfg = peer_cfg->get_ike_cfg(peer_cfg);
	other = ike_cfg->resolve_other(ike_cfg, AF_UNSPEC);
	peer_cfg->destroy(peer_cfg);
	if (!other || other->is_anyaddr(other))
	{	/* charon resolves it itself, or cannot */
		DESTROY_IF(other);
		return TRUE;
	}
	src = charon->kernel->get_source_addr(charon->kernel, other, NULL);
	known = src && (!link_local(src) || link_local(other));
	if (src)
	{
		DBG2(DBG_CFG, "mip4: initiate of '%s' from %H to %H", name, src, other);
		src->destroy(src);
	}
	other->destroy(other);
	return known;
}

/**
 * Collect the unique ids of the IKE_SAs named name; if gone is given, set
 * gone[i] when the i-th one's own address has left this host; if path is
 * given, copy the first one's endpoints into it.
 */
static int find_ike_sas(char *name, uint32_t *ids, bool *gone, int max,
						mip4_event_t *path)
{
	enumerator_t *enumerator;
	ike_sa_t *ike_sa;
	int count = 0;

	enumerator = charon->controller->create_ike_sa_enumerator(
													charon->controller, TRUE);
	while (enumerator->enumerate(enumerator, &ike_sa))
	{
		if (!streq(ike_sa->get_name(ike_sa), name))
		{
			continue;
		}
		if (path && count == 0)
		{
			mip4_copy_ike_sa(path, ike_sa, TRUE, TRUE);
		}
		if (count < max)
		{
			if (gone)
			{
				gone[count] = !charon->kernel->get_interface(charon->kernel,
										ike_sa->get_my_host(ike_sa), NULL);
			}
			ids[count++] = ike_sa->get_unique_id(ike_sa);
		}
	}
	enumerator->destroy(enumerator);
	return count;
}

/**
 * Terminate every IKE_SA of the connection (asynchronously). An IKE_SA
 * whose own address has left this host is deleted with force: its DELETE
 * goes out once and the SA, with its policies and the VPN's routes, goes
 * at once. Without force charon would send the DELETE from an address
 * that is gone and keep the SA, and the routes into ESP, until its
 * retransmissions give up (about 165 s with charon's defaults; the lab's
 * `flap` saw it). The gateway's side ends with its dead peer detection.
 */
static mip4_action_status_t terminate(char *name)
{
	uint32_t ids[16];
	bool force[16];
	int i, count;

	count = find_ike_sas(name, ids, force, countof(ids), NULL);
	if (count == 0)
	{
		return MIP4_ACT_NOT_FOUND;
	}
	for (i = 0; i < count; i++)
	{
		if (force[i])
		{
			DBG1(DBG_CFG, "mip4: terminating IKE_SA '%s'[%u] with force: its "
				 "address has left this host", name, ids[i]);
		}
		charon->controller->terminate_ike(charon->controller, ids[i],
										  force[i], NULL, NULL, 0);
	}
	return MIP4_ACT_OK;
}

/**
 * A roam's path as its look found it: the kernel's source towards the
 * peer of the connection's first IKE_SA, and that peer (both owned).
 */
typedef struct {
	host_t *src;
	host_t *other;
} roam_path_t;

static void path_forget(roam_path_t *path)
{
	DESTROY_IF(path->src);
	DESTROY_IF(path->other);
	path->src = path->other = NULL;
}

/**
 * Whether charon's kernel interface names a source address towards the
 * peer of the connection's first IKE_SA (or there is none: roam() then
 * reports it). kernel-netlink answers from its own cache of addresses,
 * which its netlink socket fills in its own time: mip4d's rtnetlink may
 * report the new address first, and a roam job run before charon knows
 * it finds no path and defers the update to kernel-netlink's own job.
 * found keeps what the look found: the update takes its source from it
 * (mip4_update_queue()), as each look is a route lookup in the kernel
 * (kernel-netlink's get_source_addr, 1-5 ms of the kernel tier's
 * emulated CPU) and three of them stood between mip4d's request and the
 * update leaving (issue 14 §1).
 */
static bool path_known(char *name, roam_path_t *found)
{
	enumerator_t *enumerator;
	ike_sa_t *ike_sa;
	host_t *other = NULL, *src;

	path_forget(found);
	enumerator = charon->controller->create_ike_sa_enumerator(
													charon->controller, TRUE);
	while (enumerator->enumerate(enumerator, &ike_sa))
	{
		if (streq(ike_sa->get_name(ike_sa), name))
		{
			other = ike_sa->get_other_host(ike_sa)->clone(
												ike_sa->get_other_host(ike_sa));
			break;
		}
	}
	enumerator->destroy(enumerator);
	if (!other)
	{
		return TRUE;
	}
	src = charon->kernel->get_source_addr(charon->kernel, other, NULL);
	if (!src)
	{
		other->destroy(other);
		return FALSE;
	}
	DBG2(DBG_CFG, "mip4: roam of '%s' from %H to %H", name, src, other);
	found->src = src;
	found->other = other;
	return TRUE;
}

/**
 * Whether charon already moves the connection's first IKE_SA: our direct
 * update (asked for twice: when the address went and on the new route),
 * or an IKE_MOBIKE task active or queued, from kernel-netlink's own roam job
 * (due 100 ms after the old address went: a move that took longer, the
 * kernel tier's under emulation, finds it due). A second roam job would
 * queue a second path check, and ike_mobike drops the answer to the first
 * when a newer check is queued: one round trip more, nothing gained.
 */
static bool mobike_pending(char *name)
{
	task_queue_t queues[] = { TASK_QUEUE_ACTIVE, TASK_QUEUE_QUEUED };
	enumerator_t *enumerator, *tasks;
	ike_sa_t *ike_sa;
	task_t *task;
	bool found = FALSE;
	int i;

	enumerator = charon->controller->create_ike_sa_enumerator(
													charon->controller, TRUE);
	while (enumerator->enumerate(enumerator, &ike_sa))
	{
		if (!streq(ike_sa->get_name(ike_sa), name))
		{
			continue;
		}
		for (i = 0; i < countof(queues) && !found; i++)
		{
			tasks = ike_sa->create_task_enumerator(ike_sa, queues[i]);
			while (tasks->enumerate(tasks, &task))
			{
				if (task->get_type(task) == TASK_IKE_MOBIKE ||
					mip4_update_is(task))
				{
					found = TRUE;
					break;
				}
			}
			tasks->destroy(tasks);
		}
		break;
	}
	enumerator->destroy(enumerator);
	return found;
}

/**
 * The direct update (mip4_update.c) on IKE_SA id, if safe: TRUE if it
 * moves the IKE_SA now. Checks the IKE_SA out and in again (destroying it
 * if initiating says so), as charon's own jobs do. found: the roam's
 * look, whose source the update takes if it was found towards this
 * IKE_SA's peer.
 */
static bool update_directly(uint32_t id, roam_path_t *found)
{
	ike_sa_t *ike_sa;
	host_t *src = NULL;
	status_t status;
	bool queued;

	ike_sa = charon->ike_sa_manager->checkout_by_id(charon->ike_sa_manager, id);
	if (!ike_sa)
	{
		return FALSE;
	}
	if (found->src &&
		found->other->ip_equals(found->other, ike_sa->get_other_host(ike_sa)))
	{
		src = found->src;
	}
	queued = mip4_update_queue(ike_sa, src, &status);
	if (status == DESTROY_ME)
	{
		charon->ike_sa_manager->checkin_and_destroy(charon->ike_sa_manager,
													ike_sa);
	}
	else
	{
		charon->ike_sa_manager->checkin(charon->ike_sa_manager, ike_sa);
	}
	return queued;
}

/**
 * mip4d saw a usable address before charon's kernel interface reported
 * it (kernel-netlink waits ROAM_DELAY, 100 ms, to coalesce events). When
 * the IKE_SA's own address is gone, MOBIKE's update (RFC 4555 §3.5) goes
 * out at once without charon's path check (mip4_update.c); otherwise
 * queue the roam job kernel-netlink would queue, so charon's MOBIKE
 * starts now. kernel-netlink's own delayed event still follows and finds
 * the path current. queued: charon's roam job is queued already (its
 * roam event), a second one would only add a path check. found: what
 * the roam's look found (path_known()).
 */
static mip4_action_status_t roam(char *name, bool queued, roam_path_t *found)
{
	uint32_t id;

	if (!find_ike_sas(name, &id, NULL, 1, NULL))
	{
		return MIP4_ACT_NOT_FOUND;
	}
	if (update_directly(id, found) || queued)
	{
		return MIP4_ACT_OK;
	}
	if (mobike_pending(name))
	{
		DBG2(DBG_CFG, "mip4: charon already moves '%s' (MOBIKE task "
			 "pending), no second roam", name);
		return MIP4_ACT_OK;
	}
	lib->processor->queue_job(lib->processor, (job_t*)roam_job_create(TRUE));
	return MIP4_ACT_OK;
}

static job_requeue_t run_action(mip4_request_t *action);

/**
 * Initiate, unless mip4d asked to terminate the connection since: its
 * IKE_SA is then no longer wanted (reported as failed, and logged why).
 */
static mip4_action_status_t initiate_in_order(mip4_request_t *action)
{
	mip4_action_status_t status = MIP4_ACT_FAILED;

	pthread_mutex_lock(&order_lock);
	if (terminated_at(action->name) > action->seq)
	{
		DBG1(DBG_CFG, "mip4: initiate of '%s' dropped: mip4d asked to "
			 "terminate it since", action->name);
	}
	else
	{
		status = initiate(action->name);
	}
	pthread_mutex_unlock(&order_lock);
	return status;
}

/**
 * Under waiting_lock: the plugin watches rtnetlink for a new address
 * while a roam is listed (mip4_addrwatch.h), unless timed looks are off
 * (roam_looks = no: charon's roam event or mip4d's next request alone run
 * a waiting roam).
 */
static void watch_while_waiting(void)
{
	bool any = FALSE;
	int i;

	for (i = 0; i < ROAMS_WAITING && !any; i++)
	{
		any = roams_waiting[i].used;
	}
	mip4_addrwatch_want(any && timed_looks());
}

/**
 * Lists a roam that waits for its path in roams_waiting (action->listed),
 * if there is room.
 */
static void list_roam(mip4_request_t *action)
{
	int i;

	pthread_mutex_lock(&waiting_lock);
	for (i = 0; i < ROAMS_WAITING; i++)
	{
		if (!roams_waiting[i].used)
		{
			action->listed = TRUE;
			roams_waiting[i].used = TRUE;
			roams_waiting[i].roam = *action;
			break;
		}
	}
	/* its own round of looks has begun: it sees what comes meanwhile */
	time_monotonic(&relooking_until);
	timeval_add_ms(&relooking_until, ROAM_ROUND_MS);
	watch_while_waiting();
	pthread_mutex_unlock(&waiting_lock);
}

/**
 * Whether action, a listed roam, still waits (nobody ran it yet); take:
 * it is run now, by the caller alone. An unlisted one always waits.
 */
static bool claim(mip4_request_t *action, bool take)
{
	bool waits = !action->listed;
	int i;

	pthread_mutex_lock(&waiting_lock);
	for (i = 0; i < ROAMS_WAITING && !waits; i++)
	{
		if (roams_waiting[i].used && roams_waiting[i].roam.id == action->id)
		{
			waits = TRUE;
			roams_waiting[i].used = !take;
		}
	}
	watch_while_waiting();
	pthread_mutex_unlock(&waiting_lock);
	return waits;
}

/**
 * How long a request has looked for its path, in µs.
 */
static long looked_us(mip4_request_t *action)
{
	timeval_t now, d;

	time_monotonic(&now);
	timersub(&now, &action->waiting, &d);
	return d.tv_sec * 1000000L + d.tv_usec;
}

/**
 * A roam or initiate whose path charon does not know yet (ready FALSE)
 * looks again: ROAM_QUICK_LOOKS quick looks, then every ROAM_LOOK_MS for
 * fast looks, at most ROAM_QUICK_LOOKS + looks times (a copy of the
 * request, scheduled; it reports when it ran). A roam past its fast looks
 * waits for its last look at the end of ROAM_WINDOW_MS. FALSE: run it now.
 */
static bool later(mip4_request_t *action, bool ready, int looks, int fast)
{
	mip4_request_t *again;
	timeval_t at;
	u_int us;

	int n = action->looks - action->cycle;

	if (ready || n >= ROAM_QUICK_LOOKS + looks)
	{
		return FALSE;
	}
	if (action->looks == 0)
	{
		DBG2(DBG_CFG, "mip4: action %u on '%s' waits for charon to know the "
			 "path", action->kind, action->name);
		time_monotonic(&action->waiting);
		if (action->kind == MIP4_ACT_ROAM)
		{
			list_roam(action);
		}
	}
	again = malloc(sizeof(*again));
	memcpy(again, action, sizeof(*again));
	again->looks++;
	if (action->kind == MIP4_ACT_ROAM &&
		(!timed_looks() || n >= ROAM_QUICK_LOOKS + fast))
	{
		long left = ROAM_WINDOW_MS * 1000L - looked_us(action);

		DBG2(DBG_CFG, "mip4: roam of '%s' waits for charon's roam event, "
			 "mip4d's next request or a new address", action->name);
		again->looks = action->cycle + ROAM_QUICK_LOOKS + looks;
		us = left > 0 ? left : 0;
	}
	else if (n < ROAM_QUICK_LOOKS)
	{
		us = ROAM_QUICK_LOOK_US;
	}
	else
	{
		us = ROAM_LOOK_MS * 1000;
	}
	time_monotonic(&at);
	at.tv_usec += us;
	at.tv_sec += at.tv_usec / 1000000;
	at.tv_usec %= 1000000;
	lib->scheduler->schedule_job_tv(lib->scheduler,
			(job_t*)callback_job_create((callback_job_cb_t)run_action, again,
										free, NULL), at);
	return TRUE;
}

/**
 * Reports an action's outcome to the bridge.
 */
static void report(mip4_request_t *action, mip4_action_status_t status,
				   mip4_event_t *path)
{
	DBG2(DBG_CFG, "mip4: action %u on '%s': status %d", action->kind,
		 action->name, status);
	if (action->looks)
	{
		DBG2(DBG_CFG, "mip4: charon knew the path after %ld us (%d looks)",
			 looked_us(action), action->looks);
	}
	mip4_action_done(action->id, status, path);
}

/**
 * Other roams of action's connection still listed (earlier requests
 * waiting for their path): action's roam moved the IKE_SA for them too,
 * so they end with its status (their pending last looks find them gone).
 */
static void report_others(mip4_request_t *action, mip4_action_status_t status)
{
	mip4_request_t others[ROAMS_WAITING];
	int i, n = 0;

	pthread_mutex_lock(&waiting_lock);
	for (i = 0; i < ROAMS_WAITING; i++)
	{
		if (roams_waiting[i].used && roams_waiting[i].roam.id != action->id &&
			streq(roams_waiting[i].roam.name, action->name))
		{
			others[n++] = roams_waiting[i].roam;
			roams_waiting[i].used = FALSE;
		}
	}
	watch_while_waiting();
	pthread_mutex_unlock(&waiting_lock);
	for (i = 0; i < n; i++)
	{
		report(&others[i], status, NULL);
	}
}

/**
 * Job body: run one action and report its outcome to the bridge.
 */
static job_requeue_t run_action(mip4_request_t *action)
{
	mip4_action_status_t status;
	mip4_event_t path;
	roam_path_t found = {};
	uint32_t id;

	memset(&path, 0, sizeof(path));
	switch (action->kind)
	{
		case MIP4_ACT_INITIATE:
			if (later(action, source_known(action->name), INITIATE_LOOKS,
					  INITIATE_LOOKS))
			{
				return JOB_REQUEUE_NONE;
			}
			status = initiate_in_order(action);
			break;
		case MIP4_ACT_TERMINATE:
			status = terminate(action->name);
			break;
		case MIP4_ACT_ROAM:
			/* charon's roam event may have run it since the last look */
			if (!claim(action, FALSE) ||
				later(action, path_known(action->name, &found),
					  ROAM_FAST_LOOKS + 1, ROAM_FAST_LOOKS) ||
				!claim(action, TRUE))
			{
				path_forget(&found);
				return JOB_REQUEUE_NONE;
			}
			status = roam(action->name, FALSE, &found);
			path_forget(&found);
			report_others(action, status);
			break;
		case MIP4_ACT_QUERY_PATH:
			status = find_ike_sas(action->name, &id, NULL, 1, &path) ?
						MIP4_ACT_OK : MIP4_ACT_NOT_FOUND;
			break;
		default:
			status = MIP4_ACT_UNSUPPORTED;
			break;
	}
	report(action, status,
		   action->kind == MIP4_ACT_QUERY_PATH ? &path : NULL);
	return JOB_REQUEUE_NONE;
}

/*
 * Described in header
 */
void mip4_actions_roam_event(void)
{
	mip4_request_t roams[ROAMS_WAITING];
	mip4_action_status_t status;
	roam_path_t found = {};
	int i, n = 0;

	pthread_mutex_lock(&waiting_lock);
	for (i = 0; i < ROAMS_WAITING; i++)
	{
		if (roams_waiting[i].used)
		{
			roams[n++] = roams_waiting[i].roam;
		}
	}
	pthread_mutex_unlock(&waiting_lock);
	for (i = 0; i < n; i++)
	{
		if (path_known(roams[i].name, &found) && claim(&roams[i], TRUE))
		{
			DBG2(DBG_CFG, "mip4: roam of '%s' run at charon's roam event, "
				 "%ld us after its first look", roams[i].name,
				 looked_us(&roams[i]));
			status = roam(roams[i].name, TRUE, &found);
			report(&roams[i], status, NULL);
			report_others(&roams[i], status);
		}
		path_forget(&found);
	}
}

/*
 * Described in header
 */
void mip4_actions_address_seen(void)
{
	mip4_request_t *again;
	timeval_t now;
	int i;

	time_monotonic(&now);
	pthread_mutex_lock(&waiting_lock);
	if (timercmp(&now, &relooking_until, <))
	{	/* a round of looks runs: it sees this change too */
		pthread_mutex_unlock(&waiting_lock);
		return;
	}
	relooking_until = now;
	timeval_add_ms(&relooking_until, ROAM_ROUND_MS);
	for (i = 0; i < ROAMS_WAITING; i++)
	{
		if (!roams_waiting[i].used)
		{
			continue;
		}
		/* a copy that looks again as a request does (later()), still
		 * listed, whichever copy claims the roam first runs it */
		again = malloc(sizeof(*again));
		memcpy(again, &roams_waiting[i].roam, sizeof(*again));
		again->looks = again->cycle = 1;
		DBG2(DBG_CFG, "mip4: roam of '%s' looks again: a new address or "
			 "route, %ld us after its first look", again->name,
			 looked_us(again));
		lib->processor->queue_job(lib->processor,
				(job_t*)callback_job_create((callback_job_cb_t)run_action,
											again, free, NULL));
	}
	pthread_mutex_unlock(&waiting_lock);
}

/*
 * Described in header
 */
int mip4_actions_request(uint64_t id, uint32_t kind, const char *name)
{
	mip4_request_t *action;

	if (!name)
	{
		return -1;
	}
	INIT(action,
		.id = id,
		.kind = kind,
	);
	mip4_copy_name(action->name, sizeof(action->name), name);
	ask_order(action);
	lib->processor->queue_job(lib->processor,
			(job_t*)callback_job_create((callback_job_cb_t)run_action, action,
										free, NULL));
	return 0;
}
