/*
 * Copyright (C) the mip4-mobike authors. GPL-2.0-or-later.
 */

#include "mip4_listener.h"
#include "mip4_actions.h"
#include "mip4_copy.h"
#include "mip4_rekey.h"
#include "mip4_update.h"

#include <daemon.h>
#include <collections/linked_list.h>
#include <processing/jobs/callback_job.h>
#include <threading/mutex.h>

typedef struct private_mip4_listener_t private_mip4_listener_t;

/**
 * Private data.
 *
 * Every hook copies what mip4d needs into a mip4_event_t on the stack and
 * hands it to the Rust bridge, which queues it and returns at once (ike_update
 * from a job, after the move's exchange has left): a hook never waits for
 * mip4d. Every hook returns TRUE to stay registered.
 */
struct private_mip4_listener_t {

	/**
	 * Public interface.
	 */
	mip4_listener_t public;

	/**
	 * ike_update events not yet handed to the bridge (held_update_t),
	 * in hook order (see ike_update()).
	 */
	linked_list_t *held;

	/**
	 * Last held event's seq.
	 */
	uint64_t seq;

	/**
	 * Guards held and seq.
	 */
	mutex_t *mutex;

	/**
	 * Taken by one release job at a time (see release_update()).
	 */
	mutex_t *release_lock;
};

/**
 * Start an event for an IKE_SA.
 */
static void init_event(mip4_event_t *ev, mip4_event_kind_t kind, bool flag,
					   ike_sa_t *ike_sa, bool local_vips)
{
	memset(ev, 0, sizeof(*ev));
	ev->kind = kind;
	ev->flag = flag;
	if (ike_sa)
	{
		mip4_copy_ike_sa(ev, ike_sa, local_vips, TRUE);
	}
}

METHOD(listener_t, handle_vips, bool,
	private_mip4_listener_t *this, ike_sa_t *ike_sa, bool handle)
{
	mip4_event_t ev;

	/* the MN: the TIA was installed (handle) or is about to be released */
	init_event(&ev, MIP4_EV_HANDLE_VIPS, handle, ike_sa, TRUE);
	mip4_event(&ev);
	return TRUE;
}

METHOD(listener_t, assign_vips, bool,
	private_mip4_listener_t *this, ike_sa_t *ike_sa, bool assign)
{
	mip4_event_t ev;

	/* the gateway: the peer's virtual IPs were assigned or released */
	init_event(&ev, MIP4_EV_ASSIGN_VIPS, assign, ike_sa, FALSE);
	mip4_event(&ev);
	return TRUE;
}

/**
 * An ike_update event held until its IKE_SA is checked in again.
 */
typedef struct {
	/** order of the hook calls */
	uint64_t seq;
	/** the new local endpoint, whose interface the release looks up */
	host_t *local;
	mip4_event_t ev;
} held_update_t;

static void held_update_destroy(held_update_t *held)
{
	held->local->destroy(held->local);
	free(held);
}

/**
 * The job releasing held events.
 */
typedef struct {
	private_mip4_listener_t *listener;
	/** the moved IKE_SA */
	ike_sa_id_t *id;
	/** its event's seq */
	uint64_t seq;
} release_t;

static void release_destroy(release_t *release)
{
	release->id->destroy(release->id);
	free(release);
}

/**
 * Job body: waits until the thread that moved the IKE_SA has checked it
 * in (a checkout waits for that; NULL if the IKE_SA went meanwhile: the
 * event still goes, the bridge and mip4d ignore a move of an IKE_SA they
 * no longer know), then hands the bridge the held events in hook order,
 * up to this one: two moves of one IKE_SA in quick succession wait for
 * the same IKE_SA, and whichever job wakes first must not report the
 * later move before the earlier one.
 */
static job_requeue_t release_update(release_t *release)
{
	private_mip4_listener_t *this = release->listener;
	held_update_t *held;
	linked_list_t *due;
	ike_sa_t *ike_sa;

	ike_sa = charon->ike_sa_manager->checkout(charon->ike_sa_manager,
											  release->id);
	if (ike_sa)
	{
		charon->ike_sa_manager->checkin(charon->ike_sa_manager, ike_sa);
	}
	/* released one job at a time, so that the events keep their order;
	 * the interface lookups outside the list's lock, which the hook
	 * takes */
	this->release_lock->lock(this->release_lock);
	due = linked_list_create();
	this->mutex->lock(this->mutex);
	while (this->held->get_first(this->held, (void**)&held) == SUCCESS &&
		   held->seq <= release->seq)
	{
		this->held->remove_first(this->held, (void**)&held);
		due->insert_last(due, held);
	}
	this->mutex->unlock(this->mutex);
	while (due->remove_first(due, (void**)&held) == SUCCESS)
	{
		mip4_copy_ifname(held->ev.local_ifname, held->local);
		mip4_event(&held->ev);
		held_update_destroy(held);
	}
	due->destroy(due);
	this->release_lock->unlock(this->release_lock);
	return JOB_REQUEUE_NONE;
}

METHOD(listener_t, ike_update, bool,
	private_mip4_listener_t *this, ike_sa_t *ike_sa, host_t *local,
	host_t *remote)
{
	held_update_t *held;
	release_t *release;

	/* what the last NAT-D found for the address left (charon's own
	 * MOBIKE moves too), for the early move's guess on a return */
	mip4_update_leaving(ike_sa);

	/* The thread reporting a move sends the exchange that carries it
	 * only after this hook (our direct update's post_build, charon's
	 * MOBIKE after its path check, a responder before its answer).
	 * Handing the event to the bridge here woke the bridge thread, and
	 * through it mip4d, before charon's sender, and on one CPU they ran
	 * first (the kernel tier: 13-91 ms from building the update to
	 * sending it, against 1-8 ms without the plugin). So the event,
	 * copied now while the IKE_SA still has its old endpoints, goes to
	 * the bridge from a job that first waits for the IKE_SA's check-in,
	 * by when the exchange is with charon's sender. */
	INIT(held,
		.local = local->clone(local),
		.ev = {
			.kind = MIP4_EV_IKE_UPDATE,
			.flag = TRUE,
		},
	);
	/* no interface lookups here: the job does the one the event needs */
	mip4_copy_ike_sa(&held->ev, ike_sa, TRUE, FALSE);
	mip4_copy_host(&held->ev.new_local, local);
	mip4_copy_host(&held->ev.new_remote, remote);
	INIT(release,
		.listener = this,
		.id = ike_sa->get_id(ike_sa)->clone(ike_sa->get_id(ike_sa)),
	);
	this->mutex->lock(this->mutex);
	held->seq = release->seq = ++this->seq;
	this->held->insert_last(this->held, held);
	this->mutex->unlock(this->mutex);
	lib->processor->queue_job(lib->processor,
			(job_t*)callback_job_create((callback_job_cb_t)release_update,
						release, (callback_job_cleanup_t)release_destroy, NULL));
	return TRUE;
}

METHOD(listener_t, ike_updown, bool,
	private_mip4_listener_t *this, ike_sa_t *ike_sa, bool up)
{
	mip4_event_t ev;

	init_event(&ev, MIP4_EV_IKE_UPDOWN, up, ike_sa, TRUE);
	mip4_event(&ev);
	return TRUE;
}

METHOD(listener_t, ike_state_change, bool,
	private_mip4_listener_t *this, ike_sa_t *ike_sa, ike_sa_state_t state)
{
	mip4_event_t ev;

	/* charon calls this before the IKE_SA takes the new state. Only two
	 * states say what ike_updown does not: an IKE_SA on its way up (so
	 * mip4d asks for no second one) and one going that never came up */
	switch (state)
	{
		case IKE_CONNECTING:
			init_event(&ev, MIP4_EV_IKE_CONNECTING, FALSE, ike_sa, TRUE);
			break;
		case IKE_DESTROYING:
			init_event(&ev, MIP4_EV_IKE_DESTROYING, FALSE, ike_sa, TRUE);
			break;
		default:
			return TRUE;
	}
	mip4_event(&ev);
	return TRUE;
}

/**
 * Event about an IKE_SA replaced by another (rekey, reestablish).
 */
static void replaced(mip4_event_kind_t kind, bool flag, ike_sa_t *old,
					 ike_sa_t *new)
{
	mip4_event_t ev;

	init_event(&ev, kind, flag, old, TRUE);
	if (new)
	{
		ev.new_unique_id = new->get_unique_id(new);
		mip4_copy_host(&ev.new_local, new->get_my_host(new));
		mip4_copy_host(&ev.new_remote, new->get_other_host(new));
	}
	mip4_event(&ev);
}

METHOD(listener_t, ike_rekey, bool,
	private_mip4_listener_t *this, ike_sa_t *old, ike_sa_t *new)
{
	replaced(MIP4_EV_IKE_REKEY, TRUE, old, new);
	return TRUE;
}

METHOD(listener_t, ike_reestablish_pre, bool,
	private_mip4_listener_t *this, ike_sa_t *old, ike_sa_t *new)
{
	replaced(MIP4_EV_IKE_REESTABLISH_PRE, TRUE, old, new);
	return TRUE;
}

METHOD(listener_t, ike_reestablish_post, bool,
	private_mip4_listener_t *this, ike_sa_t *old, ike_sa_t *new,
	bool initiated)
{
	replaced(MIP4_EV_IKE_REESTABLISH_POST, initiated, old, new);
	return TRUE;
}

METHOD(listener_t, child_updown, bool,
	private_mip4_listener_t *this, ike_sa_t *ike_sa, child_sa_t *child_sa,
	bool up)
{
	mip4_event_t ev;

	init_event(&ev, MIP4_EV_CHILD_UPDOWN, up, ike_sa, TRUE);
	mip4_copy_name(ev.child_name, sizeof(ev.child_name),
				   child_sa->get_name(child_sa));
	mip4_event(&ev);
	return TRUE;
}

METHOD(listener_t, child_state_change, bool,
	private_mip4_listener_t *this, ike_sa_t *ike_sa, child_sa_t *child_sa,
	child_sa_state_t state)
{
	/* a rekey we answered completes (mip4_rekey.c) */
	mip4_rekey_child_state(ike_sa, child_sa, state);
	return TRUE;
}

/* kernel_listener_t is not the first member, so this hook takes the
 * interface pointer itself (it needs no private data) */
METHOD(kernel_listener_t, roam, bool,
	kernel_listener_t *listener, bool address)
{
	mip4_event_t ev;

	/* kernel_handler, listening since charon started, has just queued
	 * charon's roam job: a roam mip4d asked for goes first if it can */
	mip4_actions_roam_event();
	/* the MN's addresses (address) or routes changed; MOBIKE follows */
	init_event(&ev, MIP4_EV_ROAM, address, NULL, FALSE);
	mip4_event(&ev);
	return TRUE;
}

METHOD(mip4_listener_t, destroy, void,
	private_mip4_listener_t *this)
{
	/* charon destroyed the queued release jobs before unloading us */
	this->held->destroy_function(this->held, (void*)held_update_destroy);
	this->mutex->destroy(this->mutex);
	this->release_lock->destroy(this->release_lock);
	free(this);
}

/*
 * Described in header
 */
mip4_listener_t *mip4_listener_create()
{
	private_mip4_listener_t *this;

	INIT(this,
		.public = {
			.listener = {
				.handle_vips = _handle_vips,
				.assign_vips = _assign_vips,
				.ike_update = _ike_update,
				.ike_state_change = _ike_state_change,
				.ike_updown = _ike_updown,
				.ike_rekey = _ike_rekey,
				.ike_reestablish_pre = _ike_reestablish_pre,
				.ike_reestablish_post = _ike_reestablish_post,
				.child_updown = _child_updown,
				.child_state_change = _child_state_change,
			},
			.kernel = {
				.roam = _roam,
			},
			.destroy = _destroy,
		},
		.held = linked_list_create(),
		.mutex = mutex_create(MUTEX_TYPE_DEFAULT),
		.release_lock = mutex_create(MUTEX_TYPE_DEFAULT),
	);
	return &this->public;
}
