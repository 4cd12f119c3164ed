/*
 * Copyright (C) the mip4-mobike authors. GPL-2.0-or-later.
 */

#include "mip4_copy.h"

#include <daemon.h>

void mip4_copy_host(mip4_addr_t *dst, host_t *host)
{
	chunk_t addr;

	memset(dst, 0, sizeof(*dst));
	if (!host || host->is_anyaddr(host))
	{
		return;
	}
	addr = host->get_address(host);
	switch (host->get_family(host))
	{
		case AF_INET:
			dst->family = 4;
			break;
		case AF_INET6:
			dst->family = 6;
			break;
		default:
			return;
	}
	memcpy(dst->addr, addr.ptr, min(addr.len, sizeof(dst->addr)));
	dst->port = host->get_port(host);
}

void mip4_copy_name(char *dst, size_t len, const char *src)
{
	if (len == 0)
	{
		return;
	}
	snprintf(dst, len, "%s", src ?: "");
}

void mip4_copy_ifname(char dst[MIP4_IFNAME_LEN], host_t *host)
{
	char *name = NULL;

	dst[0] = '\0';
	if (host && charon->kernel->get_interface(charon->kernel, host, &name))
	{
		mip4_copy_name(dst, MIP4_IFNAME_LEN, name);
		free(name);
	}
}

void mip4_copy_ike_sa(mip4_event_t *ev, ike_sa_t *ike_sa, bool local_vips,
					  bool ifname)
{
	enumerator_t *enumerator;
	child_sa_t *child_sa;
	host_t *vip;

	mip4_copy_name(ev->name, sizeof(ev->name), ike_sa->get_name(ike_sa));
	ev->unique_id = ike_sa->get_unique_id(ike_sa);
	mip4_copy_host(&ev->local, ike_sa->get_my_host(ike_sa));
	mip4_copy_host(&ev->remote, ike_sa->get_other_host(ike_sa));
	if (ifname)
	{
		mip4_copy_ifname(ev->local_ifname, ike_sa->get_my_host(ike_sa));
	}
	ev->mobike = ike_sa->supports_extension(ike_sa, EXT_MOBIKE);

	ev->vip_count = 0;
	enumerator = ike_sa->create_virtual_ip_enumerator(ike_sa, local_vips);
	while (ev->vip_count < MIP4_MAX_VIPS &&
		   enumerator->enumerate(enumerator, &vip))
	{
		mip4_copy_host(&ev->vips[ev->vip_count++], vip);
	}
	enumerator->destroy(enumerator);

	/* handle_vips fires before the first CHILD_SA is installed: mip4d
	 * waits for one before it registers the TIA through it */
	ev->child_sas = 0;
	enumerator = ike_sa->create_child_sa_enumerator(ike_sa);
	while (enumerator->enumerate(enumerator, &child_sa))
	{
		if (child_sa->get_state(child_sa) == CHILD_INSTALLED)
		{
			ev->child_sas++;
		}
	}
	enumerator->destroy(enumerator);
}
