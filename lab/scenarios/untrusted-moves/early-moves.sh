#!/bin/sh
# The MN's MOBIKE updates in its charon log $1 and the IPsec SA moves
# each brought (RFC 4555 §3.5; the mip4 plugin's move_children_early(),
# strongswan-plugin/mip4_update.c), one line for the evaltests:
#   MOBIKE updates: udp/0 charon esp/0 udp/2 ...
# one word per update, in order: the plugin's direct update as GUESS/N,
# GUESS the UDP encapsulation its early SA move took (udp: ESP in UDP,
# esp: plain ESP, none: no early move), N the SAD entries kernel-netlink
# updated once its answer was parsed, before the next update (charon's
# knl log at level 2): 0 when the guess held, more when the answer's
# NAT-D moved the SAs again; `charon` for charon's own MOBIKE update (its
# roam job and path check came first: a move slower than kernel-netlink's
# 100 ms ROAM_DELAY, on the loaded kernel tier). A word per
# UPDATE_SA_ADDRESSES sent, not per roam: charon's roam job can run twice
# in one slow move (the old address going, the new one coming) and send
# one update. "kernel-libipsec" where charon runs it: no update in
# place, no early move.
L=$1
if grep -q 'loaded plugins:.* kernel-libipsec' "$L"; then
	echo kernel-libipsec
	exit 0
fi
awk 'function flush() { if (kind == "direct") printf " %s/%d", guess, n; else if (kind) printf " %s", kind }
	/mip4: direct MOBIKE update/ { direct = 1 }
	/requesting address change using MOBIKE/ { a = 0 }
	/generating INFORMATIONAL request .*N\(UPD_SA_ADDR\)/ {
		flush(); a = 0
		if (direct) { kind = "direct"; guess = "none"; n = 0 } else kind = "charon"
		direct = 0
	}
	kind == "direct" && /with the update.*, before its answer/ { guess = /UDP encapsulated/ ? "udp" : "esp" }
	kind == "direct" && /parsed INFORMATIONAL response .*N\(COOKIE2\)/ { a = 1 }
	a && /updating SAD entry/ { n++ }
	BEGIN { printf "MOBIKE updates:" }
	END { flush(); print "" }' "$L"
