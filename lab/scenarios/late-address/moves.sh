#!/bin/sh
# Who sent each MOBIKE UPDATE_SA_ADDRESSES in the MN's charon log $1,
# one word per update, in order, for the evaltest:
#   moves: plugin plugin
# `plugin`: the mip4 plugin's direct update (no path check, RFC 4555
# §3.5, strongswan-plugin/mip4_update.c); `charon`: charon's own roam job
# ("requesting address change using MOBIKE"), whose path check comes
# first.
awk 'BEGIN { printf "moves:" }
	/mip4: direct MOBIKE update/ { who = "plugin" }
	/requesting address change using MOBIKE/ { who = "charon" }
	/generating INFORMATIONAL request.*N\(UPD_SA_ADDR\)/ { printf " %s", who ? who : "unknown"; who = "" }
	END { print "" }' "$1"
