/*
 * Copyright (C) the mip4-mobike authors. GPL-2.0-or-later.
 */

/**
 * Actions mip4d asks of charon (initiate/terminate the VPN, report its
 * path), each run as a charon job so the bridge thread never blocks.
 *
 * @defgroup mip4_actions mip4_actions
 * @{ @ingroup mip4
 */

#ifndef MIP4_ACTIONS_H_
#define MIP4_ACTIONS_H_

#include <stdint.h>

/**
 * mip4_shim_ops_t.request: queue action kind on connection name; the job
 * reports through mip4_action_done(). Returns 0 if queued.
 */
int mip4_actions_request(uint64_t id, uint32_t kind, const char *name);

/**
 * charon's kernel interface raised its own (delayed) roam event: a roam
 * still waiting for its path runs now if charon knows the path, before
 * the roam job charon has just queued moves the IKE_SA with a path check.
 */
void mip4_actions_roam_event(void);

/**
 * rtnetlink reported a new address or route while a roam waits for its
 * path (mip4_addrwatch.h): each waiting roam starts its looks again, at
 * the moment charon's kernel interface learns of the change, well before
 * its roam event (ROAM_DELAY later), whose roam job would move the IKE_SA
 * with a path check first.
 */
void mip4_actions_address_seen(void);

#endif /** MIP4_ACTIONS_H_ @}*/
