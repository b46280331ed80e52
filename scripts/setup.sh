#!/usr/bin/env bash
# First command of the README: install system packages, build everything,
# then run the offline demo.
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/install-deps.sh
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/umbra-target}"
cargo build --workspace --locked
./scripts/demo.sh
