/*
 * Copyright (C) the mip4-mobike authors. GPL-2.0-or-later.
 */

#include "mip4_plugin.h"
#include "mip4_listener.h"
#include "mip4_rekey.h"
#include "mip4_actions.h"
#include "mip4_addrwatch.h"
#include "mip4.h"

#include <daemon.h>
#include <threading/thread.h>

/** Default socket of mip4d (charon.plugins.mip4.socket) */
#define MIP4_DEFAULT_SOCKET "/run/mip4/plugin.sock"

/** Longest wait for the bridge thread when the plugin unloads, so a
 *  stalled mip4d never holds up charon's shutdown */
#define MIP4_STOP_WAIT_MS 1500

typedef struct private_mip4_plugin_t private_mip4_plugin_t;

/**
 * Private data.
 */
struct private_mip4_plugin_t {

	/**
	 * Public interface.
	 */
	mip4_plugin_t public;

	/**
	 * Listener copying events to the bridge.
	 */
	mip4_listener_t *listener;

	/**
	 * Thread running the Rust bridge (talks to mip4d).
	 */
	thread_t *bridge;
};

/*
 * Described in header; also mip4_shim_ops_t.log: Rust log lines land in
 * charon's log.
 */
void mip4_shim_log(int level, const char *msg)
{
	dbg(DBG_CFG, level, "mip4: %s", msg);
}

/**
 * Bridge thread body.
 */
static void *run_bridge(void *arg)
{
	mip4_bridge_run();
	return NULL;
}

METHOD(plugin_t, get_name, char*,
	private_mip4_plugin_t *this)
{
	return "mip4";
}

/**
 * Start the bridge and register the listeners, or the reverse.
 */
static bool plugin_cb(private_mip4_plugin_t *this,
					  plugin_feature_t *feature, bool reg, void *cb_data)
{
	static const mip4_shim_ops_t ops = {
		.log = mip4_shim_log,
		.request = mip4_actions_request,
	};
	mip4_settings_t settings;

	if (reg)
	{
		settings = (mip4_settings_t){
			.socket = lib->settings->get_str(lib->settings,
							"%s.plugins.mip4.socket", MIP4_DEFAULT_SOCKET,
							lib->ns),
			.connections = lib->settings->get_str(lib->settings,
							"%s.plugins.mip4.connections", "", lib->ns),
			.loglevel = lib->settings->get_int(lib->settings,
							"%s.plugins.mip4.loglevel", 1, lib->ns),
			/* what charon's kernel interface read at its start: mip4d
			 * warns when its tunnel devices are not excluded */
			.interfaces_use = lib->settings->get_str(lib->settings,
							"%s.interfaces_use", NULL, lib->ns),
			.interfaces_ignore = lib->settings->get_str(lib->settings,
							"%s.interfaces_ignore", NULL, lib->ns),
		};
		if (mip4_bridge_init(MIP4_ABI_VERSION, &ops, &settings) != 0)
		{
			DBG1(DBG_CFG, "mip4: bridge initialisation failed");
			return FALSE;
		}
		this->bridge = thread_create(run_bridge, NULL);
		if (!this->bridge)
		{
			DBG1(DBG_CFG, "mip4: creating bridge thread failed");
			return FALSE;
		}
		mip4_rekey_init();
		mip4_addrwatch_init(mip4_actions_address_seen);
		this->listener = mip4_listener_create();
		charon->bus->add_listener(charon->bus, &this->listener->listener);
		charon->kernel->add_listener(charon->kernel, &this->listener->kernel);
	}
	else
	{
		if (this->listener)
		{
			charon->kernel->remove_listener(charon->kernel,
											&this->listener->kernel);
			charon->bus->remove_listener(charon->bus,
										 &this->listener->listener);
			this->listener->destroy(this->listener);
			this->listener = NULL;
			mip4_addrwatch_deinit();
			mip4_rekey_deinit();
		}
		if (this->bridge)
		{
			if (mip4_bridge_stop(MIP4_STOP_WAIT_MS) == 0)
			{
				this->bridge->join(this->bridge);
			}
			else
			{
				DBG1(DBG_CFG, "mip4: bridge thread did not end within %d ms, "
					 "not waiting for it", MIP4_STOP_WAIT_MS);
				this->bridge->detach(this->bridge);
			}
			this->bridge = NULL;
		}
	}
	return TRUE;
}

METHOD(plugin_t, get_features, int,
	private_mip4_plugin_t *this, plugin_feature_t *features[])
{
	static plugin_feature_t f[] = {
		PLUGIN_CALLBACK((plugin_feature_callback_t)plugin_cb, NULL),
			PLUGIN_PROVIDE(CUSTOM, "mip4"),
	};
	*features = f;
	return countof(f);
}

METHOD(plugin_t, destroy, void,
	private_mip4_plugin_t *this)
{
	free(this);
}

/*
 * Described in header
 */
plugin_t *mip4_shim_plugin_create()
{
	private_mip4_plugin_t *this;

	INIT(this,
		.public = {
			.plugin = {
				.get_name = _get_name,
				.get_features = _get_features,
				.destroy = _destroy,
			},
		},
	);
	return &this->public.plugin;
}
