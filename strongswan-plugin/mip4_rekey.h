/*
 * Copyright (C) the mip4-mobike authors. GPL-2.0-or-later.
 */

/**
 * @defgroup mip4_rekey mip4_rekey
 * @{ @ingroup mip4
 */

#ifndef MIP4_REKEY_H_
#define MIP4_REKEY_H_

#include <sa/ike_sa.h>
#include <sa/child_sa.h>

/**
 * Set up the table of CHILD_SAs waiting for their rekey to complete.
 */
void mip4_rekey_init(void);

/**
 * Free it (the plugin unloads).
 */
void mip4_rekey_deinit(void);

/**
 * Have child_sa, the new CHILD_SA of a rekey we answered, rekeyed once the
 * peer completes that rekey (see mip4_rekey.c). Call with its IKE_SA
 * checked out.
 */
void mip4_rekey_when_complete(child_sa_t *child_sa);

/**
 * The bus's child_state_change event, from our listener.
 */
void mip4_rekey_child_state(ike_sa_t *ike_sa, child_sa_t *child_sa,
							child_sa_state_t state);

#endif /** MIP4_REKEY_H_ @}*/
