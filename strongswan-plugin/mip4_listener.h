/*
 * Copyright (C) the mip4-mobike authors. GPL-2.0-or-later.
 */

/**
 * @defgroup mip4_listener mip4_listener
 * @{ @ingroup mip4
 */

#ifndef MIP4_LISTENER_H_
#define MIP4_LISTENER_H_

#include <bus/listeners/listener.h>
#include <kernel/kernel_listener.h>

typedef struct mip4_listener_t mip4_listener_t;

/**
 * Bus and kernel listener copying mobility events to the Rust bridge.
 */
struct mip4_listener_t {

	/**
	 * Implements listener_t (IKE_SA/CHILD_SA events).
	 */
	listener_t listener;

	/**
	 * Implements kernel_listener_t (roam events).
	 */
	kernel_listener_t kernel;

	/**
	 * Destroy a mip4_listener_t.
	 */
	void (*destroy)(mip4_listener_t *this);
};

/**
 * Create a mip4_listener instance.
 */
mip4_listener_t *mip4_listener_create();

#endif /** MIP4_LISTENER_H_ @}*/
