/*
 * Copyright (C) the mip4-mobike authors. GPL-2.0-or-later.
 */

#include "mip4_addrwatch.h"

#include <errno.h>
#include <pthread.h>
#include <sys/socket.h>
#include <unistd.h>
#include <linux/netlink.h>
#include <linux/rtnetlink.h>

#include <utils/debug.h>
#include <processing/watcher.h>

#ifndef SOL_NETLINK
#define SOL_NETLINK 270
#endif

/**
 * The socket (-1: none), whether its groups are joined, the callback;
 * guarded by lock.
 */
static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static int watch_fd = -1;
static bool joined;
static mip4_addrwatch_cb_t watch_seen;

/**
 * What a new network brings (RFC 2131's lease, or SLAAC): its address and
 * its routes, of either family.
 */
static const int groups[] = {
	RTNLGRP_IPV4_IFADDR, RTNLGRP_IPV4_ROUTE,
	RTNLGRP_IPV6_IFADDR, RTNLGRP_IPV6_ROUTE,
};

/**
 * Whether rtm, of payload length len, names a gateway (RTA_GATEWAY);
 * attributes are walked with the kernel's length checks (RTA_OK).
 */
static bool via_gateway(struct rtmsg *rtm, int len)
{
	struct rtattr *rta;

	for (rta = RTM_RTA(rtm); RTA_OK(rta, len); rta = RTA_NEXT(rta, len))
	{
		if (rta->rta_type == RTA_GATEWAY)
		{
			return TRUE;
		}
	}
	return FALSE;
}

/**
 * Whether hdr brings what a roam's path needs: a global address that is
 * usable (not tentative: kernel-netlink ignores those until DAD is done,
 * RFC 4862 §5.4), or a unicast route that is a default route or goes
 * through a gateway (a DHCP lease's router, RFC 2132 §3.5). A link coming
 * up brings its IPv6 link-local address and route first (IPv6 routes are
 * all of scope universe), and an address its prefix route: no round of
 * looks for those, the address's own message starts one. A message too
 * short for its header is not.
 */
static bool usable(struct nlmsghdr *hdr)
{
	struct ifaddrmsg *ifa;
	struct rtmsg *rtm;

	switch (hdr->nlmsg_type)
	{
		case RTM_NEWADDR:
			if (NLMSG_PAYLOAD(hdr, 0) < sizeof(*ifa))
			{
				return FALSE;
			}
			ifa = NLMSG_DATA(hdr);
			return ifa->ifa_scope == RT_SCOPE_UNIVERSE &&
				   !(ifa->ifa_flags & IFA_F_TENTATIVE);
		case RTM_NEWROUTE:
			if (NLMSG_PAYLOAD(hdr, 0) < sizeof(*rtm))
			{
				return FALSE;
			}
			rtm = NLMSG_DATA(hdr);
			return rtm->rtm_type == RTN_UNICAST &&
				   (rtm->rtm_dst_len == 0 ||
					via_gateway(rtm, RTM_PAYLOAD(hdr)));
		default:
			return FALSE;
	}
}

/**
 * Watcher callback: drain the socket; any usable() address or route (or a
 * lost message: ENOBUFS) calls the callback once. Messages are walked
 * with the kernel's own length checks (NLMSG_OK): a short or truncated
 * one ends the walk.
 */
static bool readable(void *data, int fd, watcher_event_t event)
{
	char buf[8192];
	struct nlmsghdr *hdr;
	mip4_addrwatch_cb_t seen;
	bool news = FALSE;
	ssize_t got;
	int len;

	while ((got = recv(fd, buf, sizeof(buf), MSG_DONTWAIT)) > 0)
	{
		len = (int)got;
		for (hdr = (struct nlmsghdr*)buf; NLMSG_OK(hdr, len);
			 hdr = NLMSG_NEXT(hdr, len))
		{
			news |= usable(hdr);
		}
	}
	if (got < 0 && errno == ENOBUFS)
	{	/* the socket overflowed: something changed */
		news = TRUE;
	}
	pthread_mutex_lock(&lock);
	seen = joined ? watch_seen : NULL;
	pthread_mutex_unlock(&lock);
	if (news && seen)
	{
		seen();
	}
	return TRUE;
}

/*
 * Described in header
 */
bool mip4_addrwatch_init(mip4_addrwatch_cb_t seen)
{
	struct sockaddr_nl addr = { .nl_family = AF_NETLINK };
	int fd;

	fd = socket(AF_NETLINK, SOCK_RAW | SOCK_CLOEXEC | SOCK_NONBLOCK,
				NETLINK_ROUTE);
	if (fd < 0 || bind(fd, (struct sockaddr*)&addr, sizeof(addr)) != 0)
	{
		DBG1(DBG_CFG, "mip4: no rtnetlink socket of our own (%s): a waiting "
			 "roam waits for mip4d or charon's roam event", strerror(errno));
		if (fd >= 0)
		{
			close(fd);
		}
		return FALSE;
	}
	pthread_mutex_lock(&lock);
	watch_fd = fd;
	watch_seen = seen;
	joined = FALSE;
	pthread_mutex_unlock(&lock);
	lib->watcher->add(lib->watcher, fd, WATCHER_READ, readable, NULL);
	return TRUE;
}

/*
 * Described in header
 */
void mip4_addrwatch_want(bool want)
{
	int i, opt;

	pthread_mutex_lock(&lock);
	if (watch_fd >= 0 && want != joined)
	{
		opt = want ? NETLINK_ADD_MEMBERSHIP : NETLINK_DROP_MEMBERSHIP;
		for (i = 0; i < countof(groups); i++)
		{
			/* a family this host lacks refuses nothing: best effort */
			setsockopt(watch_fd, SOL_NETLINK, opt, &groups[i],
					   sizeof(groups[i]));
		}
		joined = want;
		DBG2(DBG_CFG, "mip4: %s rtnetlink's address and route groups",
			 want ? "joined" : "left");
	}
	pthread_mutex_unlock(&lock);
}

/*
 * Described in header
 */
void mip4_addrwatch_deinit(void)
{
	int fd;

	pthread_mutex_lock(&lock);
	fd = watch_fd;
	watch_fd = -1;
	joined = FALSE;
	watch_seen = NULL;
	pthread_mutex_unlock(&lock);
	if (fd >= 0)
	{	/* waits for a callback running on it */
		lib->watcher->remove(lib->watcher, fd);
		close(fd);
	}
}
