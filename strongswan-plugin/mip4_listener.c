/*
 * Copyright (C) the mip4-mobike authors. GPL-2.0-or-later.
 */

#include "mip4_listener.h"
#include "mip4_copy.h"

#include <daemon.h>

typedef struct private_mip4_listener_t private_mip4_listener_t;

/**
 * Private data.
 *
 * Every hook copies what mip4d needs into a mip4_event_t on the stack and
 * hands it to the Rust bridge, which queues it and returns at once: a hook
 * never waits for mip4d. Every hook returns TRUE to stay registered.
 */
struct private_mip4_listener_t {

	/**
	 * Public interface.
	 */
	mip4_listener_t public;
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
		mip4_copy_ike_sa(ev, ike_sa, local_vips);
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

METHOD(listener_t, ike_update, bool,
	private_mip4_listener_t *this, ike_sa_t *ike_sa, host_t *local,
	host_t *remote)
{
	mip4_event_t ev;

	/* the IKE_SA still has its old endpoints set here */
	init_event(&ev, MIP4_EV_IKE_UPDATE, TRUE, ike_sa, TRUE);
	mip4_copy_host(&ev.new_local, local);
	mip4_copy_host(&ev.new_remote, remote);
	mip4_copy_ifname(ev.local_ifname, local);
	mip4_event(&ev);
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

/* kernel_listener_t is not the first member, so this hook takes the
 * interface pointer itself (it needs no private data) */
METHOD(kernel_listener_t, roam, bool,
	kernel_listener_t *listener, bool address)
{
	mip4_event_t ev;

	/* the MN's addresses (address) or routes changed; MOBIKE follows */
	init_event(&ev, MIP4_EV_ROAM, address, NULL, FALSE);
	mip4_event(&ev);
	return TRUE;
}

METHOD(mip4_listener_t, destroy, void,
	private_mip4_listener_t *this)
{
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
			},
			.kernel = {
				.roam = _roam,
			},
			.destroy = _destroy,
		},
	);
	return &this->public;
}
