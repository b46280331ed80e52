#!/usr/bin/env bash
# The offline demo: two users, a handshake and an encrypted exchange, all local.
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/umbra-target}"
cargo run --quiet --locked --bin umbra -- demo "$@"
