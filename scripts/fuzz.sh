#!/usr/bin/env bash
# Builds the fuzz targets of fuzz/ and runs each for a bounded time, one after
# the other, one process each (docs/FUZZING.md). Fails if a target does not
# build, or crashes, times out or runs out of memory on its seeds or in the run.
#
# Usage: scripts/fuzz.sh [SECONDS] [TARGET...]
#   SECONDS  per target (default 5); TARGETs default to every target.
#
# Needs cargo-fuzz (`cargo install cargo-fuzz --locked`); the toolchain is
# stable, so RUSTC_BOOTSTRAP=1 lets cargo-fuzz use its nightly flags.
#
# Environment:
#   UMBRA_FUZZ_TARGET_DIR  build cache (default ~/.cache/umbra-fuzz; not the
#                          main workspace's: the flags differ, each would evict the other)
#   UMBRA_FUZZ_CORPUS      keep the inputs found here, one folder per target
#                          (default: a temporary folder, removed; the checked-in
#                          fuzz/corpus/ is only read)
# Findings go to fuzz/artifacts/<target>/ (ignored by git): reproduce one with
#   <target dir>/x86_64-unknown-linux-gnu/release/<target> fuzz/artifacts/<target>/<file>
set -euo pipefail
cd "$(dirname "$0")/.."
secs="${1:-5}"
shift || true
export RUSTC_BOOTSTRAP=1
# Incremental artifacts are large and these builds are one-shot.
export CARGO_INCREMENTAL=0
target_dir="${UMBRA_FUZZ_TARGET_DIR:-$HOME/.cache/umbra-fuzz}"
started=$(date +%s)

cd fuzz
targets=("$@")
if [ "${#targets[@]}" -eq 0 ]; then
    mapfile -t targets < <(cargo fuzz list)
fi
# -s none: the code under test forbids `unsafe` (the C libraries are not
# instrumented anyway), so AddressSanitizer would only slow every run down.
# -a: debug assertions and overflow checks, as in the test profile.
cargo fuzz build -s none -a --target-dir "$target_dir"
built=$(date +%s)
bin="$target_dir/x86_64-unknown-linux-gnu/release"

work="${UMBRA_FUZZ_CORPUS:-}"
if [ -z "$work" ]; then
    work=$(mktemp -d -t umbra-fuzz-XXXXXX)
    trap 'rm -rf "$work"' EXIT
fi
failed=()
for t in "${targets[@]}"; do
    mkdir -p "$work/$t" "artifacts/$t"
    dict=()
    if [ -f "dict/$t.dict" ]; then dict=("-dict=dict/$t.dict"); fi
    echo "fuzz: $t for ${secs}s"
    # The first folder receives new inputs; corpus/<target> is only read.
    if ! "$bin/$t" "$work/$t" "corpus/$t" "${dict[@]}" \
        -max_total_time="$secs" -timeout=10 -rss_limit_mb=2048 \
        -artifact_prefix="artifacts/$t/" -print_final_stats=1 2>"$work/$t.log"; then
        tail -n 40 "$work/$t.log"
        failed+=("$t")
    fi
    grep -E '^stat::number_of_executed_units' "$work/$t.log" | sed "s/^/fuzz: $t /" || true
done
echo "fuzz: ${#targets[@]} targets, build $((built - started)) s, runs $(($(date +%s) - built)) s"
if [ "${#failed[@]}" -gt 0 ]; then
    echo "fuzz: FAILED: ${failed[*]} (inputs in fuzz/artifacts/)"
    exit 1
fi
