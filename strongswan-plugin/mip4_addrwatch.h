/*
 * Copyright (C) the mip4-mobike authors. GPL-2.0-or-later.
 */

/**
 * The plugin's own sight of a new address while a roam waits for its
 * path (mip4_actions.c).
 *
 * On a real laptop the next network's address comes from DHCP hundreds
 * of ms to seconds after the old one went, long after a roam mip4d asked
 * for at the break has stopped looking. kernel-netlink raises its roam
 * event ROAM_DELAY (100 ms) after the new address, and charon's own roam
 * job, queued at that event just before the plugin's hook runs, moves the
 * IKE_SA with a path check first (one round trip more) whenever mip4d's
 * next request comes later than that (the kernel tier: mip4d read a move's
 * address 26-120 ms after charon). So while a roam waits, the plugin reads
 * rtnetlink's address and route groups itself, at the moment
 * kernel-netlink does, and a new global address, or a default route or
 * one through a gateway, starts the roam's looks again. Joined only while a roam waits: no wakeup otherwise.
 *
 * @defgroup mip4_addrwatch mip4_addrwatch
 * @{ @ingroup mip4
 */

#ifndef MIP4_ADDRWATCH_H_
#define MIP4_ADDRWATCH_H_

#include <library.h>

/**
 * Called (on a charon job, never blocking) when rtnetlink reported a new
 * address or route while the groups were joined.
 */
typedef void (*mip4_addrwatch_cb_t)(void);

/**
 * Open the rtnetlink socket and register it with charon's watcher; the
 * groups are not joined yet. FALSE if it could not be opened (the roams
 * then wait for mip4d and charon's roam event, as without it).
 */
bool mip4_addrwatch_init(mip4_addrwatch_cb_t seen);

/**
 * Join (want) or leave the address and route groups; idempotent, callable
 * under any lock of the caller's (a setsockopt()).
 */
void mip4_addrwatch_want(bool want);

/**
 * Unregister and close the socket (plugin unload; not from the callback).
 */
void mip4_addrwatch_deinit(void);

#endif /** MIP4_ADDRWATCH_H_ @}*/
