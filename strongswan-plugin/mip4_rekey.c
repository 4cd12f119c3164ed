/*
 * Copyright (C) the mip4-mobike authors. GPL-2.0-or-later.
 */

/*
 * kernel-libipsec cannot move an IPsec SA (update_sa: NOT_SUPPORTED), so
 * after a MOBIKE update charon rekeys every CHILD_SA (ike_sa.c
 * update_hosts()). One CHILD_SA cannot be rekeyed then: the new half of a
 * rekey the gateway started and we answered, while the gateway has not
 * yet had that answer (it was sent from the address we just left, or is
 * still on its way). Until the gateway processes it, the SA does not
 * exist there: a rekey of it gets NO_CHILD_SA (RFC 7296 §2.25), charon
 * then deletes it here and creates another, and the gateway's
 * retransmitted request, answered from charon's cache, later installs on
 * the gateway an outbound SA we no longer have: its traffic to us is lost
 * from then on. Its inbound SA here was installed at the old address,
 * which libipsec matches on (ipsec_sa_mgr.c checkout_by_spi()), so it
 * must still move. So the update leaves it alone (mip4_update.c), and it
 * is rekeyed here once the gateway completes its rekey: its DELETE of the
 * old CHILD_SA (RFC 7296 §1.3.3) sets that one CHILD_DELETED, after which
 * charon installs the new one's outbound SA; the rekey job runs once the
 * IKE_SA is checked in. With kernel ESP the SAs move in place and none of
 * this happens.
 */

#include "mip4_rekey.h"

#include <daemon.h>
#include <collections/array.h>
#include <processing/jobs/rekey_child_sa_job.h>
#include <threading/mutex.h>

/** unique IDs of CHILD_SAs to rekey once complete, and its lock */
static array_t *waiting;
static mutex_t *lock;

/*
 * Described in header
 */
void mip4_rekey_init(void)
{
	waiting = array_create(sizeof(uint32_t), 0);
	lock = mutex_create(MUTEX_TYPE_DEFAULT);
}

/*
 * Described in header
 */
void mip4_rekey_deinit(void)
{
	array_destroy(waiting);
	lock->destroy(lock);
	waiting = NULL;
	lock = NULL;
}

/**
 * Removes id from the table, TRUE if it was there. Call with lock held.
 */
static bool take(uint32_t id)
{
	uint32_t current;
	int i;

	for (i = 0; i < array_count(waiting); i++)
	{
		if (array_get(waiting, i, &current) && current == id)
		{
			array_remove(waiting, i, NULL);
			return TRUE;
		}
	}
	return FALSE;
}

/*
 * Described in header
 */
void mip4_rekey_when_complete(child_sa_t *child_sa)
{
	uint32_t id = child_sa->get_unique_id(child_sa);

	lock->lock(lock);
	if (!take(id))
	{
		DBG1(DBG_IKE, "mip4: CHILD_SA %s{%u} is rekeyed once the peer "
			 "completes the rekey that made it", child_sa->get_name(child_sa),
			 id);
	}
	array_insert(waiting, ARRAY_TAIL, &id);
	lock->unlock(lock);
}

/*
 * Described in header
 */
void mip4_rekey_child_state(ike_sa_t *ike_sa, child_sa_t *child_sa,
							child_sa_state_t state)
{
	child_sa_t *successor;
	bool due;

	if (!lock)
	{
		return;
	}
	if (state == CHILD_DESTROYING)
	{	/* gone before its rekey completed (the IKE_SA closed) */
		lock->lock(lock);
		take(child_sa->get_unique_id(child_sa));
		lock->unlock(lock);
		return;
	}
	if (state != CHILD_DELETED || !child_sa->get_rekey_spi(child_sa))
	{
		return;
	}
	/* the rekeyed CHILD_SA knows its successor's outbound SPI */
	successor = ike_sa->get_child_sa(ike_sa, child_sa->get_protocol(child_sa),
									 child_sa->get_rekey_spi(child_sa), FALSE);
	if (!successor)
	{
		return;
	}
	lock->lock(lock);
	due = take(successor->get_unique_id(successor));
	lock->unlock(lock);
	if (due)
	{	/* the job finds it by its inbound SPI and our address
		 * (child_sa_manager, updated by update_hosts()) */
		DBG1(DBG_IKE, "mip4: rekeying CHILD_SA %s{%u}, its addresses are "
			 "the ones before the update", successor->get_name(successor),
			 successor->get_unique_id(successor));
		lib->processor->queue_job(lib->processor,
			(job_t*)rekey_child_sa_job_create(
						successor->get_protocol(successor),
						successor->get_spi(successor, TRUE),
						ike_sa->get_my_host(ike_sa)));
	}
}
