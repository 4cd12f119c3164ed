#!/bin/sh
# make bench: every figure of docs/PERFORMANCE.md (issue 14, "Reporting").
#
#   scripts/bench.sh                 all producers
#   scripts/bench.sh 40-ha-scale ... only these (the other sections are kept
#                                    as docs/PERFORMANCE.md has them)
#   scripts/bench.sh --assemble      no producer: docs/PERFORMANCE.md from
#                                    the section files build/bench/ holds
#                                    (and the committed file's others)
#
# Each producer prints one markdown section on stdout (heading, the command,
# a table with the median and the worst of >= 20 runs, each ratio measured
# within one run) and lands in build/bench/NN-name.md. The sections are then
# concatenated in name order under a fixed header into docs/PERFORMANCE.md,
# each behind a `<!-- bench: NN-name -->` marker: a run of some producers
# takes the others back from the committed file, so a partial run never
# drops a section.
#
# To add a figure: a line `produce NN-name COMMAND...` below (COMMAND prints
# the section), or a shell function for it.
#
# BENCH_HA_NODES: mobile nodes for 40-ha-scale (default 1000000, the size
# issue 14 §4 sets its goals at; a few minutes, most of it the fill).
set -eu
cd "$(dirname "$0")/.."

CARGO=${CARGO:-cargo}
OUT=build/bench
DOC=docs/PERFORMANCE.md
LAB=./target/release/mip4-lab
ASSEMBLE=
if [ "${1:-}" = "--assemble" ]; then
	ASSEMBLE=1
	shift
fi
mkdir -p "$OUT"
[ -n "$ASSEMBLE" ] || rm -f "$OUT"/*.md "$OUT"/*.tmp

# The sections of the committed file, for those not produced this time.
if [ -f "$DOC" ]; then
	awk -v out="$OUT" '
		/^<!-- bench: [0-9A-Za-z_-]+ -->$/ {
			f = out "/" $3 ".md"
			if ((getline line < f) > 0) f = ""
			close(out "/" $3 ".md")
			next
		}
		f != "" { print > f }
	' "$DOC"
fi

SELECTED="$*"
FAILED=""

measured_on() {
	echo "_Measured $(date -u +%Y-%m-%d) on $(nproc) cores ($(uname -m), Linux $(uname -r)), shared with other builds (load average $(cut -d' ' -f1-3 /proc/loadavg) when it ended)._"
}

# produce NN-name COMMAND...: runs COMMAND (when selected) into the section
# file, with a line saying when and on what it was measured. A failing
# producer keeps the section it had and fails the run at the end.
produce() {
	name=$1
	shift
	if [ -n "$SELECTED" ]; then
		case " $SELECTED " in *" $name "*) ;; *) return 0 ;; esac
	fi
	echo "== bench: $name: $*" >&2
	if "$@" >"$OUT/$name.tmp"; then
		{
			cat "$OUT/$name.tmp"
			echo
			measured_on
		} >"$OUT/$name.md"
		rm -f "$OUT/$name.tmp"
	else
		echo "== bench: $name FAILED (section kept as it was)" >&2
		rm -f "$OUT/$name.tmp"
		FAILED="$FAILED $name"
	fi
}

# The codec (benches/codec.rs): criterion's per-sample times, so the table
# has the median and the worst like every other.
codec() {
	# A producer's failure must fail its section: a function called as
	# `if "$@"` runs with set -e off, so each step says so itself.
	$CARGO bench --bench codec -- --noplot >&2 || return 1
	[ -n "$(find target/criterion -path '*/new/sample.json' 2>/dev/null)" ] || {
		echo "codec: criterion wrote no samples under target/criterion" >&2
		return 1
	}
	echo "## Registration codec (criterion)"
	echo
	echo 'Command: `cargo bench --bench codec`. Time per operation over criterion'"'"'s samples.'
	echo
	echo "| benchmark | samples | median | worst |"
	echo "| --- | --- | --- | --- |"
	find target/criterion -path '*/new/sample.json' | sort | while read -r f; do
		d=$(dirname "$f")
		name=$(jq -r '.full_id // .title' "$d/benchmark.json")
		jq -r --arg n "$name" '
			[.iters as $i | .times | to_entries[] | .value / $i[.key]] | sort
			| "| \($n) | \(length) | \(.[length/2|floor] | . * 10 | round / 10) ns | \(.[-1] | . * 10 | round / 10) ns |"
		' "$d/sample.json"
	done
}

# The plugin's cost on MOBIKE (src/lab/bench.rs).
plugin_cost() {
	"$LAB" bench --json | jq -r '
		def row($v; $s): "| \($v) | \($s.n) | \($s.mn_median_ms) | \($s.mn_max_ms) | \($s.gw_median_ms) | \($s.gw_max_ms // "-") |";
		"## The mip4 plugin'"'"'s cost on MOBIKE",
		"",
		"Command: `mip4-lab bench` (src/lab/bench.rs). Address change -> IKE_SA updated, ms; variants alternate ABBA in one run.",
		"",
		"| charon | moves | MN median | MN worst | gateway median | gateway worst |",
		"| --- | --- | --- | --- | --- | --- |",
		row("without mip4"; .without),
		row("with mip4"; .with),
		"",
		"Ratio with/without (medians, same run): MN \(.mn_ratio), gateway \(.gw_ratio)."'
}

# via_file NAME COMMAND...: for producers that write their section to the
# file named by their last argument.
via_file() {
	f="$OUT/$1.section"
	shift
	"$@" "$f" >&2 && cat "$f" && rm -f "$f"
}
# mip4d's footprint is that of the binary the packages ship: cargo's
# `dist` profile (Cargo.toml; packaging/debian/rules, make install).
footprint() {
	# What the dataplane scenario runs from its --bin-dir.
	$CARGO build --profile dist --bin mip4d --bin mip4-ha --bin mip4ctl >&2 || return 1
	via_file 60-footprint "$LAB" --bin-dir target/dist bench --dataplane 20 --markdown
}

if [ -n "$ASSEMBLE" ]; then
	SELECTED=none
else
	$CARGO build --release --lib --bins >&2
fi

# NN-name                     producer (prints the section)
produce 10-codec              codec
produce 20-plugin-cost        plugin_cost
produce 30-handover           via_file 30-handover "$LAB" bench --handover 20 --markdown
produce 32-handover-vm        via_file 32-handover-vm "$LAB" bench --handover 10 --vm --delays 10,25,40 --markdown
produce 35-baselines          via_file 35-baselines "$LAB" bench-baseline --moves 30 --rounds 6 --out
produce 36-baselines-vm       via_file 36-baselines-vm "$LAB" bench-baseline --moves 20 --rounds 2 --vm --out
produce 40-ha-scale           "$LAB" bench-ha --markdown --mobile-nodes "${BENCH_HA_NODES:-1000000}"
produce 50-flood              "$LAB" flood --runs 20 --forged 100000
produce 55-flood-replayed     "$LAB" flood --runs 20 --forged 100000 --replayed
produce 60-footprint          footprint
produce 65-dataplane-vm       via_file 65-dataplane-vm "$LAB" bench --dataplane 1 --vm --markdown

{
	cat <<'EOF'
# Performance

Written by `make bench` (scripts/bench.sh): do not edit by hand. Each
section names the command that produced it and gives the median and the
worst of at least 20 runs; a ratio is always measured within one run (both
sides alternate on the same machine at the same time), so it holds when
the machine's load drifts. The absolute times are of a small shared
machine; the ratios are the figures to compare. `scripts/bench.sh NAME...`
runs only the named sections and keeps the others.
EOF
	for f in "$OUT"/*.md; do
		[ -e "$f" ] || continue
		n=$(basename "$f" .md)
		echo
		echo "<!-- bench: $n -->"
		# Trailing blank lines are the header's business.
		sed -e :a -e '/^\n*$/{$d;N;ba' -e '}' "$f"
	done
} >"$DOC.tmp"
mv "$DOC.tmp" "$DOC"
echo "== bench: $DOC written" >&2

if [ -n "$FAILED" ]; then
	echo "== bench: failed:$FAILED" >&2
	exit 1
fi
