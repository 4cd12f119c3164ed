/*
 * Copyright (C) the mip4-mobike authors. GPL-2.0-or-later.
 */

/**
 * Copies what the Rust side needs out of charon's objects into the plain
 * structs of mip4.h, so Rust never depends on strongSwan's layouts.
 *
 * @defgroup mip4_copy mip4_copy
 * @{ @ingroup mip4
 */

#ifndef MIP4_COPY_H_
#define MIP4_COPY_H_

#include <sa/ike_sa.h>

#include "mip4.h"

/**
 * Copy a host (may be NULL: family 0).
 */
void mip4_copy_host(mip4_addr_t *dst, host_t *host);

/**
 * Copy a NUL-terminated string, truncating to len - 1 bytes.
 */
void mip4_copy_name(char *dst, size_t len, const char *src);

/**
 * Copy the interface that carries host ("" if unknown).
 */
void mip4_copy_ifname(char dst[MIP4_IFNAME_LEN], host_t *host);

/**
 * Copy name, unique id, endpoints, local interface (if ifname: a lookup
 * in charon's kernel interface) and virtual IPs of an IKE_SA (local
 * virtual IPs if local, else the peer's).
 */
void mip4_copy_ike_sa(mip4_event_t *ev, ike_sa_t *ike_sa, bool local_vips,
					  bool ifname);

#endif /** MIP4_COPY_H_ @}*/
