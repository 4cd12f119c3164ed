#!/usr/bin/env bash
# Installs what the build and the tests need on Debian 12 (run as root).
# Idempotent: does nothing when everything is present.
set -euo pipefail
command -v cargo >/dev/null || { echo "install-deps: cargo not found (rustup toolchain required)" >&2; exit 1; }
rustup component list --installed 2>/dev/null | grep -q '^rustfmt' || rustup component add rustfmt clippy
