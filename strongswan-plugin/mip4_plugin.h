/*
 * Copyright (C) the mip4-mobike authors. GPL-2.0-or-later.
 */

/**
 * @defgroup mip4 mip4
 * @ingroup cplugins
 *
 * RFC 5266 glue: tells mip4d (the Mobile IPv4 mobile-node daemon) what
 * charon does with the VPN (TIA, MOBIKE moves, IKE_SA up/down/rekey) and
 * lets mip4d initiate/terminate the VPN. The logic lives in Rust
 * (libstrongswan-mip4.so is a Rust cdylib); this shim only adapts charon.
 *
 * @defgroup mip4_plugin mip4_plugin
 * @{ @ingroup mip4
 */

#ifndef MIP4_PLUGIN_H_
#define MIP4_PLUGIN_H_

#include <plugins/plugin.h>

typedef struct mip4_plugin_t mip4_plugin_t;

/**
 * Plugin forwarding charon's mobility events to mip4d.
 */
struct mip4_plugin_t {

	/**
	 * Implements plugin interface.
	 */
	plugin_t plugin;
};

/**
 * Plugin constructor. charon's plugin loader looks up mip4_plugin_create,
 * which the Rust side exports and which calls this: a Rust cdylib exports
 * only Rust's own symbols (rustc hides those of linked C objects).
 */
plugin_t *mip4_shim_plugin_create();

/**
 * Logs a line to charon's log (CFG group) at level 0..4, prefixed "mip4: ".
 * Usable before the plugin exists (the constructor's version check).
 */
void mip4_shim_log(int level, const char *msg);

#endif /** MIP4_PLUGIN_H_ @}*/
