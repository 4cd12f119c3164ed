/*
 * Copyright (C) the mip4-mobike authors. GPL-2.0-or-later.
 */

#include "mip4_update.h"
#include "mip4_rekey.h"

#include <pthread.h>

#include <daemon.h>
#include <collections/array.h>
#include <collections/linked_list.h>
#include <processing/jobs/callback_job.h>
#include <encoding/payloads/notify_payload.h>
#include <processing/jobs/rekey_child_sa_job.h>
#include <sa/ikev2/tasks/ike_mobike.h>
#include <sa/ikev2/tasks/ike_natd.h>

/**
 * COOKIE2's length (RFC 4555 allows 8 to 64 octets).
 */
#define COOKIE2_SIZE 16

/**
 * How long our CHILD_SA rekeys after the update wait for the gateway's
 * (see defer_child_rekeys()).
 */
#define REKEY_DEFER_MS 5

/**
 * The task type the update claims. A MOBIKE task of our own would be
 * TASK_IKE_MOBIKE, but libcharon casts those to its private ike_mobike
 * struct (ike_mobike.c, task_manager_v2.c). In 5.9.8 TASK_IKE_REDIRECT
 * is only ever compared, never cast (task_manager_v2.c activate_task(),
 * ike_redirect.c), and is activated right after IKE_MOBIKE and
 * IKE_DELETE: before a queued CHILD_SA delete, create or rekey, as RFC
 * 4555 §3.5 wants the update to go as soon as the window allows.
 */
#define MIP4_UPDATE_TYPE TASK_IKE_REDIRECT

typedef struct private_mip4_update_t private_mip4_update_t;

/**
 * The update task (initiator only).
 */
struct private_mip4_update_t {

	/** task_t interface */
	task_t task;

	/** IKE_SA moved */
	ike_sa_t *ike_sa;

	/** source of the update (the kernel's towards the peer, our port) */
	host_t *me;

	/** COOKIE2 sent, the answer must echo it */
	chunk_t cookie2;

	/** NAT detection in this exchange (charon's exported task) */
	ike_natd_t *natd;

	/** message ID of the update in flight */
	uint32_t mid;

	/** the update has been sent */
	bool sent;

	/** sent even from the IKE_SA's own address (see restart()) */
	bool confirm;

	/** unique IDs (uint32_t) of the CHILD_SAs installed as it left */
	array_t *children;
};

METHOD(task_t, get_type, task_type_t,
	private_mip4_update_t *this)
{
	return MIP4_UPDATE_TYPE;
}

/*
 * Described in header
 */
bool mip4_update_is(task_t *task)
{
	/* only our tasks carry our get_type */
	return task->get_type == (void*)_get_type;
}

/**
 * Our task in queue of ike_sa, if any.
 */
static private_mip4_update_t *find_update(ike_sa_t *ike_sa, task_queue_t queue)
{
	enumerator_t *enumerator;
	task_t *task, *found = NULL;

	enumerator = ike_sa->create_task_enumerator(ike_sa, queue);
	while (enumerator->enumerate(enumerator, &task))
	{
		if (mip4_update_is(task))
		{
			found = task;
			break;
		}
	}
	enumerator->destroy(enumerator);
	return (private_mip4_update_t*)found;
}

/**
 * Whether a task of type (or any task) is in queue of ike_sa.
 */
static bool has_task(ike_sa_t *ike_sa, task_queue_t queue, task_type_t type,
					 bool any)
{
	enumerator_t *enumerator;
	task_t *task;
	bool found = FALSE;

	enumerator = ike_sa->create_task_enumerator(ike_sa, queue);
	while (enumerator->enumerate(enumerator, &task))
	{
		if (any || task->get_type(task) == type)
		{
			found = TRUE;
			break;
		}
	}
	enumerator->destroy(enumerator);
	return found;
}

/**
 * Whether charon's own MOBIKE exchange in flight checks paths: it finds
 * the new one itself (ike_mobike.c transmit()). One that does not (the
 * address list update charon sends at kernel-netlink's roam event after
 * a move, RFC 4555 §3.6) would turn to probing at its next
 * retransmission, and charon's own update would then move the IPsec SAs,
 * rekeying with kernel-libipsec even a CHILD_SA the gateway has not
 * completed (mip4_rekey.c; bounce-rekey-lost when its second move came
 * after that event): it is resent from the new address instead
 * (resend_from()), and our update follows.
 */
static bool mobike_probing(ike_sa_t *ike_sa)
{
	enumerator_t *enumerator;
	task_t *task;
	bool probing = FALSE;

	enumerator = ike_sa->create_task_enumerator(ike_sa, TASK_QUEUE_ACTIVE);
	while (enumerator->enumerate(enumerator, &task))
	{
		if (task->get_type(task) == TASK_IKE_MOBIKE)
		{	/* charon's own: ours claims another type */
			probing = ((ike_mobike_t*)task)->is_probing((ike_mobike_t*)task);
			break;
		}
	}
	enumerator->destroy(enumerator);
	return probing;
}

/**
 * The kernel's source towards the peer with the IKE_SA's local port (4500
 * after NAT-T's float), or NULL; only while the IKE_SA's own local
 * address is gone from this host: break before make, so the direct
 * update cannot take the IKE_SA off a path that still works (charon's
 * path check then decides, RFC 4555 §3.5 leaves the choice to the
 * initiator's policy). found: that source as the caller looked it up
 * towards this peer a moment ago (the roam's look, mip4_actions.c; the
 * kernel's answer, which charon's cache of addresses may not list yet);
 * NULL: look it up here (a route lookup in the kernel).
 */
static host_t *new_source(ike_sa_t *ike_sa, host_t *found)
{
	host_t *me, *src;

	me = ike_sa->get_my_host(ike_sa);
	if (charon->kernel->get_interface(charon->kernel, me, NULL))
	{
		return NULL;
	}
	if (found)
	{
		src = found->clone(found);
	}
	else
	{
		src = charon->kernel->get_source_addr(charon->kernel,
										ike_sa->get_other_host(ike_sa), NULL);
	}
	if (src)
	{
		src->set_port(src, me->get_port(me));
	}
	return src;
}

/**
 * The source mip4_update_queue() found, for the build_i() of the update
 * it starts: task_manager_v2 builds the request on the same thread,
 * inside ike_sa->initiate(), when no other exchange is in flight. One
 * route lookup per roam then, not two more; an update built later
 * (queued behind another exchange, or moved to a new IKE_SA) looks
 * again, as the route may have changed meanwhile.
 */
static __thread host_t *source_found;

METHOD(task_t, build_i, status_t,
	private_mip4_update_t *this, message_t *message)
{
	rng_t *rng;

	DESTROY_IF(this->me);
	this->me = NULL;
	if (this->ike_sa->get_state(this->ike_sa) == IKE_ESTABLISHED &&
		this->ike_sa->supports_extension(this->ike_sa, EXT_MOBIKE) &&
		message->get_exchange_type(message) == INFORMATIONAL)
	{
		this->me = new_source(this->ike_sa, source_found);
		if (!this->me && this->confirm)
		{
			this->me = this->ike_sa->get_my_host(this->ike_sa);
			this->me = this->me->clone(this->me);
		}
	}
	if (!this->me)
	{	/* the SA changed while queued (a reauth, an older move answered):
		 * nothing to send, charon's own roaming follows */
		message->set_exchange_type(message, EXCHANGE_TYPE_UNDEFINED);
		return SUCCESS;
	}
	/* RFC 4555 §3.5: the update leaves from the new address; NAT-D below
	 * hashes the message's addresses */
	message->set_source(message, this->me->clone(this->me));
	message->add_notify(message, FALSE, UPDATE_SA_ADDRESSES, chunk_empty);

	/* RFC 4555 §3.5: COOKIE2 makes the answer prove it answers this
	 * request (return routability of the answer) */
	chunk_free(&this->cookie2);
	rng = lib->crypto->create_rng(lib->crypto, RNG_STRONG);
	if (!rng || !rng->allocate_bytes(rng, COOKIE2_SIZE, &this->cookie2))
	{
		DESTROY_IF(rng);
		return FAILED;
	}
	rng->destroy(rng);
	message->add_notify(message, FALSE, COOKIE2, this->cookie2);

	/* RFC 4555 §3.5: NAT_DETECTION_*_IP for the new addresses */
	if (this->natd)
	{
		this->natd->task.destroy(&this->natd->task);
	}
	this->natd = ike_natd_create(this->ike_sa, TRUE);
	this->natd->task.build(&this->natd->task, message);

	this->mid = message->get_message_id(message);
	DBG1(DBG_IKE, "mip4: direct MOBIKE update %#H - %#H, no path check "
		 "(the old address is gone)", this->me,
		 this->ike_sa->get_other_host(this->ike_sa));
	return NEED_MORE;
}

/**
 * The CHILD_SAs of the IKE_SA as the update leaves: any rekey of them
 * that follows was caused by this update (or is the gateway's).
 */
static void record_children(private_mip4_update_t *this)
{
	enumerator_t *enumerator;
	child_sa_t *child_sa;
	child_sa_state_t state;

	array_destroy(this->children);
	this->children = array_create(sizeof(uint32_t), 0);
	enumerator = this->ike_sa->create_child_sa_enumerator(this->ike_sa);
	while (enumerator->enumerate(enumerator, &child_sa))
	{
		state = child_sa->get_state(child_sa);
		if (state == CHILD_INSTALLED || state == CHILD_REKEYED ||
			state == CHILD_REKEYING)
		{	/* those update_hosts() moves: one rekey each */
			uint32_t id = child_sa->get_unique_id(child_sa);

			array_insert(this->children, ARRAY_TAIL, &id);
		}
	}
	enumerator->destroy(enumerator);
}

/**
 * Whether child_sa was one of the recorded CHILD_SAs.
 */
static bool was_recorded(private_mip4_update_t *this, child_sa_t *child_sa)
{
	uint32_t id, i;

	for (i = 0; i < array_count(this->children); i++)
	{
		if (array_get(this->children, i, &id) &&
			id == child_sa->get_unique_id(child_sa))
		{
			return TRUE;
		}
	}
	return FALSE;
}

/**
 * Set once the kernel's IPsec backend refused to update an SA in place
 * (update_sa: NOT_SUPPORTED): the IPsec SAs then move with the answer
 * only, by charon's rekeys (see defer_child_rekeys()).
 */
static bool no_update_in_place;

/**
 * Whether addr is IPv4 in a range that is not routed on the Internet
 * (RFC 1918, RFC 6598's shared space).
 */
static bool private_v4(host_t *addr)
{
	chunk_t a = addr->get_address(addr);

	return addr->get_family(addr) == AF_INET && a.len == 4 &&
		   (a.ptr[0] == 10 ||
			(a.ptr[0] == 172 && (a.ptr[1] & 0xf0) == 16) ||
			(a.ptr[0] == 192 && a.ptr[1] == 168) ||
			(a.ptr[0] == 100 && (a.ptr[1] & 0xc0) == 64));
}

/**
 * How many local and peer address pairs' NAT-D answers are remembered.
 */
#define NAT_SEEN_MAX 32

/**
 * What an answer's NAT-D found (RFC 7296 §2.23) for one pair of
 * addresses (no ports: a NAT maps those anew).
 */
typedef struct {
	/** address family, 0 for a free slot */
	int family;
	/** local address */
	uint8_t me[16];
	/** peer address */
	uint8_t other[16];
	/** the local address was behind a NAT */
	bool nat_here;
} nat_seen_t;

/**
 * The answers remembered, the oldest overwritten first; the tasks of
 * different IKE_SAs run on charon's threads at the same time.
 */
static nat_seen_t nat_seen[NAT_SEEN_MAX];
static u_int nat_seen_next;
static pthread_mutex_t nat_seen_lock = PTHREAD_MUTEX_INITIALIZER;

/**
 * The slot of the pair me, other, or NULL (with nat_seen_lock held).
 */
static nat_seen_t *nat_seen_find(host_t *me, host_t *other)
{
	chunk_t a = me->get_address(me), b = other->get_address(other);
	u_int i;

	if (me->get_family(me) != other->get_family(other) ||
		a.len > sizeof(nat_seen[0].me) || a.len != b.len)
	{
		return NULL;
	}
	for (i = 0; i < NAT_SEEN_MAX; i++)
	{
		if (nat_seen[i].family == me->get_family(me) &&
			memeq(nat_seen[i].me, a.ptr, a.len) &&
			memeq(nat_seen[i].other, b.ptr, b.len))
		{
			return &nat_seen[i];
		}
	}
	return NULL;
}

/**
 * Remembers what the answer's NAT-D found for me towards other, for the
 * next move to me (nat_expected()).
 */
static void nat_seen_remember(host_t *me, host_t *other, bool nat_here)
{
	chunk_t a = me->get_address(me), b = other->get_address(other);
	nat_seen_t *seen;

	if (me->get_family(me) != other->get_family(other) ||
		a.len > sizeof(nat_seen[0].me) || a.len != b.len)
	{
		return;
	}
	pthread_mutex_lock(&nat_seen_lock);
	seen = nat_seen_find(me, other);
	if (!seen)
	{
		seen = &nat_seen[nat_seen_next];
		nat_seen_next = (nat_seen_next + 1) % NAT_SEEN_MAX;
		seen->family = me->get_family(me);
		memcpy(seen->me, a.ptr, a.len);
		memcpy(seen->other, b.ptr, b.len);
	}
	seen->nat_here = nat_here;
	pthread_mutex_unlock(&nat_seen_lock);
}

/**
 * Whether an earlier answer found me behind a NAT towards other; FALSE
 * if none is remembered.
 */
static bool nat_seen_known(host_t *me, host_t *other, bool *nat_here)
{
	nat_seen_t *seen;

	pthread_mutex_lock(&nat_seen_lock);
	seen = nat_seen_find(me, other);
	if (seen)
	{
		*nat_here = seen->nat_here;
	}
	pthread_mutex_unlock(&nat_seen_lock);
	return seen != NULL;
}

/**
 * UDP encapsulation for the IPsec SAs moved before the answer: what the
 * answer's NAT-D will most likely find (RFC 4555 §3.5: the initiator
 * enables NAT Traversal as it moves the SAs when it "suspects or knows
 * that a NAT is likely to be present"). What an earlier answer found for
 * the same local and peer address is known (a return to a network seen
 * before); otherwise a private IPv4 source towards a peer that is not
 * private cannot reach it but through a NAT, and a public one is not
 * behind one. A gateway behind a NAT, or encapsulation forced by
 * configuration, stays as it is, and so does anything else (IPv6, both
 * ends private). A wrong guess costs a second reinstall, with the
 * answer, whose NAT-D corrects it (process_i()); until then the MN's
 * ESP is dropped, as it was before the early move.
 */
static bool nat_expected(ike_sa_t *ike_sa, host_t *me, host_t *other)
{
	bool nat_here;

	if (ike_sa->has_condition(ike_sa, COND_NAT_FAKE) ||
		ike_sa->has_condition(ike_sa, COND_NAT_THERE))
	{
		return TRUE;
	}
	if (nat_seen_known(me, other, &nat_here))
	{
		return nat_here;
	}
	if (me->get_family(me) == AF_INET && other->get_family(other) == AF_INET &&
		!private_v4(other))
	{
		return private_v4(me);
	}
	return ike_sa->has_condition(ike_sa, COND_NAT_HERE);
}

/**
 * RFC 4555 §3.5: the initiator updates the IPsec SAs with the new
 * addresses as it sends UPDATE_SA_ADDRESSES (our policy needs no return
 * routability check first), so that what the MN sends leaves on the new
 * path at once: the gateway's kernel takes ESP by its destination and
 * SPI, whatever its source, and the MN's inbound SAs then take the
 * gateway's traffic at the new address as soon as the gateway moved its
 * own. Linux drops ESP whose UDP encapsulation differs from its SA's
 * (xfrm_input(): XfrmInStateMismatch), so the SAs take the encapsulation
 * the answer will most likely bring (nat_expected()); when the guess
 * holds, the answer's move finds nothing left to do. Installed CHILD_SAs
 * only: one being rekeyed or half installed waits for the answer, as
 * before. Not with kernel-libipsec (it cannot update an SA in place).
 */
static void move_children_early(private_mip4_update_t *this)
{
	ike_sa_t *ike_sa = this->ike_sa;
	host_t *me = ike_sa->get_my_host(ike_sa);
	host_t *other = ike_sa->get_other_host(ike_sa);
	enumerator_t *enumerator;
	child_sa_t *child_sa;
	linked_list_t *vips;
	host_t *vip;
	bool encap;
	u_int moved = 0;

	if (no_update_in_place ||
		(charon->kernel->get_features(charon->kernel) &
		 KERNEL_REQUIRE_UDP_ENCAPSULATION))
	{	/* kernel-libipsec's own feature: it cannot update SAs either */
		return;
	}
	encap = nat_expected(ike_sa, me, other);
	vips = linked_list_create();
	/* given the virtual IPs, child_sa->update() installs each again on the
	 * new address's interface, a delete and an add that kernel-netlink
	 * waits out one rtnetlink event each, and that flush the routes from
	 * the TIA and make mip4d see it go and come back: 5-22 ms of a move
	 * on the kernel tier's guest (lab/README.md). With
	 * charon.install_virtual_ip_on they go back on that same interface,
	 * so the move before the answer leaves them where they are. */
	if (!lib->settings->get_str(lib->settings, "%s.install_virtual_ip_on",
								NULL, lib->ns))
	{
		enumerator = ike_sa->create_virtual_ip_enumerator(ike_sa, TRUE);
		while (enumerator->enumerate(enumerator, &vip))
		{
			vips->insert_last(vips, vip);
		}
		enumerator->destroy(enumerator);
	}

	enumerator = ike_sa->create_child_sa_enumerator(ike_sa);
	while (enumerator->enumerate(enumerator, &child_sa))
	{
		if (child_sa->get_state(child_sa) != CHILD_INSTALLED ||
			!(child_sa->get_outbound_state(child_sa) & CHILD_OUTBOUND_SA))
		{
			continue;
		}
		/* found by SPI and address (kernel events), as update_hosts() */
		charon->child_sa_manager->remove(charon->child_sa_manager, child_sa);
		charon->child_sa_manager->add(charon->child_sa_manager, child_sa,
									  ike_sa);
		if (child_sa->update(child_sa, me, other, vips, encap) ==
			NOT_SUPPORTED)
		{	/* nothing moved: the answer's rekeys do it */
			no_update_in_place = TRUE;
			break;
		}
		moved++;
	}
	enumerator->destroy(enumerator);
	vips->destroy(vips);
	if (moved)
	{
		DBG1(DBG_IKE, "mip4: %u CHILD_SA(s) moved to %H with the update%s, "
			 "before its answer", moved, me, encap ? " (UDP encapsulated)" : "");
	}
}

/**
 * The early move's job: the update it follows, by IKE_SA and message ID.
 */
typedef struct {
	ike_sa_id_t *id;
	uint32_t mid;
} early_move_t;

static void early_move_destroy(early_move_t *early)
{
	early->id->destroy(early->id);
	free(early);
}

/**
 * Job body: the checkout waits until the thread that built the update
 * has checked the IKE_SA in, by when the update is with charon's sender,
 * so the move (dozens of kernel calls) never delays it. Nothing if the
 * answer came first, or the IKE_SA moved again meanwhile (a queued
 * update follows; restart() moved the SAs).
 */
static job_requeue_t early_move(early_move_t *early)
{
	private_mip4_update_t *active;
	ike_sa_t *ike_sa;

	ike_sa = charon->ike_sa_manager->checkout(charon->ike_sa_manager,
											  early->id);
	if (!ike_sa)
	{
		return JOB_REQUEUE_NONE;
	}
	active = find_update(ike_sa, TASK_QUEUE_ACTIVE);
	if (active && active->sent && active->mid == early->mid &&
		!find_update(ike_sa, TASK_QUEUE_QUEUED))
	{
		move_children_early(active);
	}
	charon->ike_sa_manager->checkin(charon->ike_sa_manager, ike_sa);
	return JOB_REQUEUE_NONE;
}

METHOD(task_t, post_build, status_t,
	private_mip4_update_t *this, message_t *message)
{
	early_move_t *early;

	/* RFC 4555 §3.5: the initiator moves the IKE_SA to the new addresses
	 * (no return routability check required by our policy) and sends the
	 * update; its retransmissions leave from there. The IPsec SAs move
	 * right after the update has left (move_children_early(), a job): not
	 * here, where the move (every SA, policy and the virtual IP) would
	 * delay the update (the kernel tier: 70 ms to 1.1 s); and once more
	 * with the answer (process_i) only if its NAT-D found another UDP
	 * encapsulation than the one expected. The move is reported on
	 * charon's bus here, before the
	 * IKE_SA takes the new address, as charon's own update_hosts() does
	 * for its listeners; our own listener hands it to mip4d only once the
	 * IKE_SA is checked in, after the update is with the sender
	 * (mip4_listener.c ike_update()). */
	this->ike_sa->set_condition(this->ike_sa, COND_STALE, FALSE);
	if (!this->me->equals(this->me, this->ike_sa->get_my_host(this->ike_sa)))
	{	/* a confirming update (restart()) moved it already */
		charon->bus->ike_update(charon->bus, this->ike_sa, this->me,
								this->ike_sa->get_other_host(this->ike_sa));
		DBG1(DBG_IKE, "mip4: local endpoint changed from %#H to %#H, the "
			 "IPsec SAs follow once the update has left",
			 this->ike_sa->get_my_host(this->ike_sa), this->me);
		this->ike_sa->set_my_host(this->ike_sa, this->me->clone(this->me));
	}
	record_children(this);
	this->sent = TRUE;
	INIT(early,
		.id = this->ike_sa->get_id(this->ike_sa),
		.mid = this->mid,
	);
	early->id = early->id->clone(early->id);
	lib->processor->queue_job(lib->processor,
			(job_t*)callback_job_create((callback_job_cb_t)early_move, early,
						(callback_job_cleanup_t)early_move_destroy, NULL));
	return NEED_MORE;
}

/**
 * Moves the IPsec SAs to the IKE_SA's addresses, with UDP encapsulation
 * as NAT detection decided (RFC 4555 §3.5). kernel-libipsec cannot update
 * SAs in place (update_sa: NOT_SUPPORTED): charon queues a CHILD_SA rekey,
 * which the task manager starts after this exchange.
 */
static void move_children(private_mip4_update_t *this)
{
	this->ike_sa->update_hosts(this->ike_sa, NULL, NULL,
							   UPDATE_HOSTS_FORCE_CHILDREN);
}

/**
 * kernel-libipsec cannot update SAs (update_sa: NOT_SUPPORTED), so
 * update_hosts() queued a rekey of each CHILD_SA, which the task manager
 * would start as soon as this exchange ends. A gateway on kernel-libipsec
 * too queued its own rekey when it processed the update and sent it
 * before its answer. Only when we process the answer first (two jobs,
 * either order) are our CHILD_SAs still CHILD_INSTALLED here: our rekey
 * would then leave before we process the gateway's, the two collide
 * (RFC 7296 §2.8.1), and when ours survives the gateway, its responder,
 * sends on the new SA only once our DELETE arrives: one more RTT. Then
 * our rekeys start REKEY_DEFER_MS later, through charon's own rekey job:
 * by then the gateway's, if any, is processed and ours finds the CHILD_SA
 * rekeyed or gone (child_rekey.c build_i()). A CHILD_SA we made as the
 * responder of the gateway's rekey, whose outbound SA is not installed
 * yet, is not rekeyed now: the gateway may not have our answer yet (see
 * mip4_rekey.c); it is rekeyed once that rekey completes. Only when the
 * queued rekeys are exactly one for each CHILD_SA the update moved
 * (installed, rekeyed or being rekeyed: charon's own tasks find the
 * latter two in the wrong state and do nothing); otherwise charon's queue
 * stays as it is. With kernel ESP the SAs moved in place and nothing was
 * queued.
 */
static void defer_child_rekeys(private_mip4_update_t *this)
{
	enumerator_t *enumerator;
	task_t *task;
	child_sa_t *child_sa;
	child_sa_state_t state;
	array_t *stale, *pending;
	u_int queued = 0, moved = 0;

	enumerator = this->ike_sa->create_task_enumerator(this->ike_sa,
													  TASK_QUEUE_QUEUED);
	while (enumerator->enumerate(enumerator, &task))
	{
		if (task->get_type(task) == TASK_CHILD_REKEY)
		{
			queued++;
		}
	}
	enumerator->destroy(enumerator);

	stale = array_create(0, 0);
	pending = array_create(0, 0);
	enumerator = this->ike_sa->create_child_sa_enumerator(this->ike_sa);
	while (enumerator->enumerate(enumerator, &child_sa))
	{
		state = child_sa->get_state(child_sa);
		if (!was_recorded(this, child_sa))
		{
			continue;
		}
		if (state == CHILD_INSTALLED &&
			!(child_sa->get_outbound_state(child_sa) & CHILD_OUTBOUND_SA))
		{
			array_insert(pending, ARRAY_TAIL, child_sa);
		}
		else if (state == CHILD_INSTALLED)
		{
			array_insert(stale, ARRAY_TAIL, child_sa);
		}
		else if (state != CHILD_REKEYED && state != CHILD_REKEYING)
		{
			continue;
		}
		moved++;
	}
	enumerator->destroy(enumerator);

	if (queued && queued == moved)
	{
		enumerator = this->ike_sa->create_task_enumerator(this->ike_sa,
														  TASK_QUEUE_QUEUED);
		while (enumerator->enumerate(enumerator, &task))
		{
			if (task->get_type(task) == TASK_CHILD_REKEY)
			{	/* a queued task is the caller's once removed */
				this->ike_sa->remove_task(this->ike_sa, enumerator);
				task->destroy(task);
			}
		}
		enumerator->destroy(enumerator);
		while (array_remove(stale, ARRAY_HEAD, &child_sa))
		{	/* the job finds the CHILD_SA by its inbound SPI and our
			 * address (child_sa_manager, updated by update_hosts()) */
			lib->scheduler->schedule_job_ms(lib->scheduler,
				(job_t*)rekey_child_sa_job_create(
							child_sa->get_protocol(child_sa),
							child_sa->get_spi(child_sa, TRUE),
							this->ike_sa->get_my_host(this->ike_sa)),
				REKEY_DEFER_MS);
		}
		while (array_remove(pending, ARRAY_HEAD, &child_sa))
		{
			mip4_rekey_when_complete(child_sa);
		}
		DBG1(DBG_IKE, "mip4: %u CHILD_SA rekey(s) after the update deferred "
			 "%d ms for the gateway's", queued, REKEY_DEFER_MS);
	}
	array_destroy(stale);
	array_destroy(pending);
}

METHOD(task_t, process_i, status_t,
	private_mip4_update_t *this, message_t *message)
{
	notify_payload_t *notify;
	chunk_t echoed = chunk_empty;

	/* RFC 4555 §3.5: the responder copies COOKIE2 into its answer */
	notify = message->get_notify(message, COOKIE2);
	if (notify)
	{
		echoed = notify->get_notification_data(notify);
	}
	if (!chunk_equals_const(this->cookie2, echoed))
	{
		DBG1(DBG_IKE, "mip4: COOKIE2 mismatch, closing IKE_SA");
		return FAILED;
	}
	if (find_update(this->ike_sa, TASK_QUEUE_QUEUED))
	{	/* RFC 4555 §3.5: the address changed again while waiting, the
		 * queued update follows; no MOBIKE processing of this answer */
		return SUCCESS;
	}
	if (message->get_notify(message, UNACCEPTABLE_ADDRESSES))
	{	/* RFC 4555 §3.5: the initiator MAY retry, keep using the addresses
		 * or disconnect; the old ones are gone, charon's roaming retries
		 * (the IPsec SAs follow the IKE_SA, as they would have) */
		DBG1(DBG_IKE, "mip4: peer finds %H unacceptable", this->me);
		move_children(this);
		return SUCCESS;
	}
	/* RFC 4555 §3.5: enable or disable NAT traversal from the answer's
	 * NAT-D, then move the IPsec SAs, into or out of UDP encapsulation */
	this->natd->task.process(&this->natd->task, message);
	nat_seen_remember(this->me, this->ike_sa->get_other_host(this->ike_sa),
					  this->ike_sa->has_condition(this->ike_sa, COND_NAT_HERE));
	move_children(this);
	defer_child_rekeys(this);
	return SUCCESS;
}

METHOD(task_t, migrate, void,
	private_mip4_update_t *this, ike_sa_t *ike_sa)
{
	/* a new IKE_SA (rekey, reauth) or a reset: build anew if still due */
	this->ike_sa = ike_sa;
	chunk_free(&this->cookie2);
	if (this->natd)
	{
		this->natd->task.destroy(&this->natd->task);
		this->natd = NULL;
	}
	this->sent = FALSE;
}

METHOD(task_t, destroy, void,
	private_mip4_update_t *this)
{
	array_destroy(this->children);
	chunk_free(&this->cookie2);
	DESTROY_IF(this->me);
	if (this->natd)
	{
		this->natd->task.destroy(&this->natd->task);
	}
	free(this);
}

/**
 * A new update task on ike_sa.
 */
static task_t *update_create(ike_sa_t *ike_sa)
{
	private_mip4_update_t *this;

	INIT(this,
		.task = {
			.get_type = _get_type,
			.build = _build_i,
			.post_build = _post_build,
			.process = _process_i,
			.migrate = _migrate,
			.destroy = _destroy,
		},
		.ike_sa = ike_sa,
	);
	return &this->task;
}

/**
 * RFC 4555 §3.5: a new address change while an update of ours waits for
 * its answer: move the IKE_SA and its IPsec SAs now (the request in
 * flight is retransmitted from the new address at once), and queue a new
 * update; the answer to the old one is not processed. The queued update
 * is sent even though the IKE_SA already has the new address: a gateway
 * that processed the first copy answers the retransmission from its cache
 * (RFC 7296 §2.1) without moving its IKE_SA, and would keep sending (its
 * rekeys, with kernel-libipsec its new CHILD_SAs' ESP) to the address we
 * left.
 */
static status_t restart(ike_sa_t *ike_sa, private_mip4_update_t *active,
						host_t *src)
{
	private_mip4_update_t *queued;

	if (!active->sent)
	{
		return SUCCESS;
	}
	if (src->equals(src, ike_sa->get_my_host(ike_sa)))
	{	/* the IKE_SA is where the update in flight left from: a second
		 * request for the same move (mip4d's on the new default route),
		 * let in when kernel-netlink's address cache, which new_source()
		 * asks first, did not list the new address yet */
		return SUCCESS;
	}
	DBG1(DBG_IKE, "mip4: moved again during the MOBIKE update, now to %#H",
		 src);
	ike_sa->update_hosts(ike_sa, src, NULL, UPDATE_HOSTS_FORCE_ALL);
	queued = find_update(ike_sa, TASK_QUEUE_QUEUED);
	if (!queued)
	{
		queued = (private_mip4_update_t*)update_create(ike_sa);
		ike_sa->queue_task(ike_sa, &queued->task);
	}
	queued->confirm = TRUE;
	return ike_sa->retransmit(ike_sa, active->mid);
}

/**
 * A move while another exchange of ours waits for its answer (our
 * CHILD_SA rekey, a DELETE): charon queues MOBIKE behind it and
 * retransmits the request from the address that is gone until it gives
 * up and deletes the IKE_SA (~165 s with charon's defaults; the lab's
 * move-rekey-lost). RFC 7296 §2.11 has the peer answer a request at the
 * address it came from, from its cache if it had it already (§2.1), so
 * the IKE_SA takes the new address now and the request leaves from
 * there at once. The update follows the exchange (RFC 4555 §3.5), sent
 * from the IKE_SA's own address, which is the new one now; charon's own
 * MOBIKE, if queued already, goes instead. The IPsec SAs move once that
 * update has left, as in post_build().
 */
static status_t resend_from(ike_sa_t *ike_sa, host_t *src)
{
	private_mip4_update_t *queued;
	uint32_t mid = ike_sa->get_message_id(ike_sa, TRUE);

	DBG1(DBG_IKE, "mip4: moved while request %u waits for its answer, "
		 "retransmitting it from %#H", mid, src);
	charon->bus->ike_update(charon->bus, ike_sa, src,
							ike_sa->get_other_host(ike_sa));
	ike_sa->set_my_host(ike_sa, src->clone(src));
	if (!has_task(ike_sa, TASK_QUEUE_QUEUED, TASK_IKE_MOBIKE, FALSE))
	{
		queued = find_update(ike_sa, TASK_QUEUE_QUEUED);
		if (!queued)
		{
			queued = (private_mip4_update_t*)update_create(ike_sa);
			ike_sa->queue_task(ike_sa, &queued->task);
		}
		queued->confirm = TRUE;
	}
	return ike_sa->retransmit(ike_sa, mid);
}

/*
 * Described in header
 */
void mip4_update_leaving(ike_sa_t *ike_sa)
{
	if (ike_sa->get_version(ike_sa) != IKEV2 ||
		!ike_sa->has_condition(ike_sa, COND_ORIGINAL_INITIATOR) ||
		find_update(ike_sa, TASK_QUEUE_ACTIVE))
	{	/* an update of ours in flight (restart()): the conditions are not
		 * yet its answer's, they belong to the address before */
		return;
	}
	nat_seen_remember(ike_sa->get_my_host(ike_sa),
					  ike_sa->get_other_host(ike_sa),
					  ike_sa->has_condition(ike_sa, COND_NAT_HERE));
}

/*
 * Described in header
 */
bool mip4_update_queue(ike_sa_t *ike_sa, host_t *found, status_t *status)
{
	private_mip4_update_t *active;
	host_t *src;

	*status = SUCCESS;
	/* MOBIKE negotiated (RFC 4555 §3.1), and only the original initiator
	 * moves the SAs (RFC 4555 §3.5) */
	if (ike_sa->get_version(ike_sa) != IKEV2 ||
		ike_sa->get_state(ike_sa) != IKE_ESTABLISHED ||
		!ike_sa->supports_extension(ike_sa, EXT_MOBIKE) ||
		!ike_sa->has_condition(ike_sa, COND_ORIGINAL_INITIATOR) ||
		mobike_probing(ike_sa))
	{
		return FALSE;
	}
	src = new_source(ike_sa, found);
	if (!src)
	{
		return FALSE;
	}
	active = find_update(ike_sa, TASK_QUEUE_ACTIVE);
	if (!active && has_task(ike_sa, TASK_QUEUE_ACTIVE, TASK_IKE_MOBIKE, TRUE))
	{	/* another exchange in flight (charon's MOBIKE too, if it does not
		 * probe), whoever moves the IKE_SA next */
		*status = resend_from(ike_sa, src);
	}
	else if (has_task(ike_sa, TASK_QUEUE_QUEUED, TASK_IKE_MOBIKE, FALSE))
	{	/* charon's own MOBIKE is due next */
		src->destroy(src);
		return FALSE;
	}
	else if (active)
	{
		*status = restart(ike_sa, active, src);
	}
	else if (!find_update(ike_sa, TASK_QUEUE_QUEUED))
	{	/* nothing in flight: the conditions are the last NAT-D's for the
		 * address we leave (post_build()'s ike_update finds our task) */
		mip4_update_leaving(ike_sa);
		ike_sa->queue_task(ike_sa, update_create(ike_sa));
		source_found = src;
		*status = ike_sa->initiate(ike_sa, NULL, NULL);
		source_found = NULL;
	}
	src->destroy(src);
	return TRUE;
}
