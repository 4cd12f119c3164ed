#!/bin/sh
# Writes packaging/mip4d.text-order: the functions mip4d runs, for the
# linker to put first and together (build.rs, text_order; issue 14 §5).
#
#   scripts/text-order.sh
#
# 1. A `dist` build with symbols (its own target dir) runs the `dataplane`
#    scenario once (start-up, registration, idle, a move, bulk traffic
#    through the tunnel, stop) under callgrind: the functions it ran.
# 2. The `dist` build proper with MIP4_TEXT_MAP=1: its linker map names
#    every function as this profile's build spells it (the hashes in
#    Rust's symbol names differ between profiles).
# 3. The functions of 1 by name without those hashes, spelled as in 2.
#
# Run it again when the dependencies or the dist profile change (lld then
# skips the names it no longer finds, and the layout helps less). Needs
# root (the lab), valgrind, c++filt (binutils) and python3
# (scripts/text-order.py matches the names).
set -eu
cd "$(dirname "$0")/.."

CARGO=${CARGO:-cargo}
WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT
SYM=target/text-order

CARGO_TARGET_DIR=$SYM CARGO_PROFILE_DIST_STRIP=false \
	$CARGO build --profile dist --bin mip4d --bin mip4-ha --bin mip4ctl
$CARGO build --release --bin mip4-lab
mkdir -p "$WORK/bin"
for b in mip4-ha mip4ctl; do ln -s "$PWD/$SYM/dist/$b" "$WORK/bin/$b"; done
cat >"$WORK/bin/mip4d" <<EOF
#!/bin/sh
exec valgrind --tool=callgrind --demangle=no --callgrind-out-file=$WORK/callgrind.out $PWD/$SYM/dist/mip4d "\$@"
EOF
chmod +x "$WORK/bin/mip4d"
./target/release/mip4-lab --lab-dir lab --bin-dir "$WORK/bin" bench --dataplane 1 >&2

# The map of the dist build proper (build.rs writes it into its OUT_DIR).
rm -f target/dist/build/mip4-mobike-*/out/mip4d.map
MIP4_TEXT_MAP=1 $CARGO build --profile dist --bin mip4d
map=$(ls -t target/dist/build/mip4-mobike-*/out/mip4d.map | head -1)

python3 scripts/text-order.py "$WORK/callgrind.out" "$SYM/dist/mip4d" "$map" packaging/mip4d.text-order
