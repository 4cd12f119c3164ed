# mip4-mobike: the two README commands are `make demo` and `make check`.
# Both install what they need on a fresh Debian 12 machine (as root).

CARGO ?= cargo
export CARGO_TERM_COLOR ?= never

.PHONY: all deps build check fmt-check clippy test demo bench fuzz clean

all: build

deps:
	./scripts/install-deps.sh

build: deps
	$(CARGO) build --release --all-targets

fmt-check:
	$(CARGO) fmt --all -- --check

clippy: deps
	$(CARGO) clippy --all-targets -- -D warnings

test: deps
	$(CARGO) test --all-targets

check: deps fmt-check clippy test

# mip4-lab runs the mip4d, mip4-ha and mip4ctl built beside it: build them all.
demo: deps
	$(CARGO) build --release --bins
	$(CARGO) run --release --bin mip4-lab -- tour

bench: deps
	$(CARGO) bench

fuzz:
	./scripts/fuzz.sh

clean:
	$(CARGO) clean
