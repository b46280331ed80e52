#!/usr/bin/env bash
# Second command of the README (and what CI runs): the whole test suite.
# Tests that need a Tor network start a private one on 127.0.0.1 themselves.
#
# Every test binary runs even when an earlier one fails (--no-fail-fast); the
# last line says what passed and what failed. Extra arguments go to
# `cargo test` (e.g. `./scripts/test.sh -- --test-threads=1`).
#
# Environment: CARGO_TARGET_DIR (default ~/.cache/umbra-target);
# UMBRA_TEST_LOG=FILE keeps the full output there (scripts/flaky.sh uses it).
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/umbra-target}"
log="${UMBRA_TEST_LOG:-$(mktemp -t umbra-test-XXXXXX.log)}"
started=$(date +%s)
status=0
cargo test --workspace --locked --no-fail-fast "$@" 2>&1 | tee "$log" || status=$?

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

summary=$(awk -f scripts/lib/test-summary.awk "$log")
echo
echo "==== summary ($(( $(date +%s) - started )) s; full output: $log)"
echo "$summary"
if [ "$status" -eq 0 ] && grep -q '^\(FAILED\|CRASHED\) ' <<<"$summary"; then status=101; fi
if [ "$status" -ne 0 ] && ! grep -q '^\(FAILED\|CRASHED\) ' <<<"$summary"; then
  echo "cargo test failed before or outside the tests (exit $status): see the build errors above"
fi
echo "==== $([ "$status" -eq 0 ] && echo PASSED || echo FAILED)"
exit "$status"
