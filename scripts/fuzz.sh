#!/usr/bin/env bash
# Fuzzes every parser of src/wire, the plugin <-> mip4d protocol and the
# control protocol, each for a bounded time (`make fuzz`). Each target's
# corpus is kept in fuzz/corpus/<target>/ and grows from run to run; the
# protocol targets start from seeds of valid messages (fuzz/seeds/<target>/).
#
# Runs on the stable toolchain: cargo-fuzz passes nightly-only -Z flags
# (sanitizer, sancov) to rustc, which stable accepts with RUSTC_BOOTSTRAP=1.
# No nightly toolchain is needed.
#
#   FUZZ_SECONDS=60 scripts/fuzz.sh            # every target, 60 s each
#   scripts/fuzz.sh request reply              # some targets
#
# Needs cargo-fuzz (`cargo install cargo-fuzz --locked`), installed here
# if missing. Crashes are left in fuzz/artifacts/<target>/.
set -euo pipefail
cd "$(dirname "$0")/.."

SECONDS_PER_TARGET="${FUZZ_SECONDS:-30}"
TARGETS=("$@")
if [ ${#TARGETS[@]} -eq 0 ]; then
    TARGETS=(request reply extensions agent_adv agent_sol tunnel_data plugin_proto ctl)
fi

if ! cargo fuzz --version >/dev/null 2>&1; then
    echo "fuzz.sh: installing cargo-fuzz" >&2
    cargo install cargo-fuzz --locked
fi

export RUSTC_BOOTSTRAP=1
for t in "${TARGETS[@]}"; do
    echo "== fuzz target $t for ${SECONDS_PER_TARGET}s"
    mkdir -p "fuzz/corpus/$t"
    seeds=()
    if [ -d "fuzz/seeds/$t" ]; then
        seeds=("fuzz/seeds/$t")
    fi
    cargo fuzz run --fuzz-dir fuzz "$t" "fuzz/corpus/$t" "${seeds[@]}" -- \
        -max_total_time="$SECONDS_PER_TARGET" -max_len=1500
done
echo "fuzz.sh: no crash in ${#TARGETS[@]} target(s)"
