/*
 * Copyright (C) the mip4-mobike authors. GPL-2.0-or-later.
 */

/**
 * The original initiator's MOBIKE address update (RFC 4555 §3.5) sent as
 * the first exchange after a move, without the path check charon's own
 * ike_mobike task sends before it. Used only when the IKE_SA's local
 * address is gone (break before make), so no working path can be lost;
 * the return routability of the answer stays (COOKIE2).
 *
 * @defgroup mip4_update mip4_update
 * @{ @ingroup mip4
 */

#ifndef MIP4_UPDATE_H_
#define MIP4_UPDATE_H_

#include <sa/ike_sa.h>
#include <sa/task.h>

/**
 * Move the IKE_SA to the kernel's source towards its peer now, if that is
 * safe (see mip4_update.c). TRUE if queued (or an update in flight was
 * restarted on the new address, or another request in flight resent
 * from it), status then says what initiating or retransmitting it
 * returned (DESTROY_ME: check the IKE_SA in and destroy it); FALSE to
 * leave the move to charon's own roaming. found: the kernel's source
 * towards the IKE_SA's peer as the caller just looked it up, or NULL to
 * look it up here. Call with ike_sa checked out.
 */
bool mip4_update_queue(ike_sa_t *ike_sa, host_t *found, status_t *status);

/**
 * Whether task is one of ours (an update queued or in flight).
 */
bool mip4_update_is(task_t *task);

/**
 * The IKE_SA leaves its local address (a bus ike_update): remembers what
 * the last NAT-D found for that address, so that a later move back to it
 * guesses the UDP encapsulation of the early move from that (charon's own
 * MOBIKE updates too, not only ours). Call with ike_sa checked out.
 */
void mip4_update_leaving(ike_sa_t *ike_sa);

#endif /** MIP4_UPDATE_H_ @}*/
