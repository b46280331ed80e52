#!/usr/bin/env bash
# First command of the README: install system packages, build the binaries
# optimized (release profile: what people run should be fast), then run the
# offline demo with them.
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/install-deps.sh
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/umbra-target}"
cargo build --release --workspace --bins --locked
./scripts/demo.sh
