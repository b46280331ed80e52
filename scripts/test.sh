#!/usr/bin/env bash
# Second command of the README (and what CI runs): the whole test suite.
# Tests that need a Tor network start a private one on 127.0.0.1 themselves.
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/umbra-target}"
cargo test --workspace --locked
