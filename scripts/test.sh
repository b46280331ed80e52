#!/usr/bin/env bash
# Second command of the README (and what CI runs): the whole test suite.
# Tests that need a Tor network start a private one on 127.0.0.1 themselves.
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/umbra-target}"
status=0
cargo test --workspace --locked || status=$?

# Every test network's tor exits by itself when its test binary exits
# (__OwningControllerProcess). C tor has been seen to hang in its own exit
# path once in a while; make sure nothing outlives the run, and say so.
# Only tors whose owning test process is gone are considered.
orphans() {
  for pid in $(pgrep -f 'tor -f /tmp/umbra-testnet-' || true); do
    torrc=$(tr '\0' '\n' < "/proc/$pid/cmdline" 2>/dev/null | sed -n 3p) || continue
    owner=$(awk '/__OwningControllerProcess/ {print $2}' "$torrc" 2>/dev/null)
    if [ -n "$owner" ] && [ ! -d "/proc/$owner" ]; then echo "$pid"; fi
  done
}
for _ in $(seq 1 30); do
  [ -z "$(orphans)" ] && break
  sleep 1
done
if [ -n "$(orphans)" ]; then
  echo "warning: tor processes outlived their test network's owner; killing: $(orphans | tr '\n' ' ')" >&2
  orphans | xargs -r kill -9
fi
exit "$status"
