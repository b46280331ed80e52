#!/usr/bin/env bash
# Debian packages of `umbra`, `umbra-handshaker` and `umbra-desktop`, built with cargo-deb
# (pinned; installed if missing). docs/OPERATING.md says what is in them.
#
#   ./scripts/package.sh                 profile "release" (what CI builds,
#                                        installs and upgrades in its test)
#   UMBRA_PACKAGE_PROFILE=dist ./scripts/package.sh
#                                        fat LTO, one codegen unit, stripped
#                                        (sizes and build time: OPERATING §10)
#
# Environment: CARGO_TARGET_DIR (default ~/.cache/umbra-target),
# UMBRA_PACKAGE_PROFILE (release), UMBRA_PACKAGE_OUT (where the .deb files go,
# default $CARGO_TARGET_DIR/debian), UMBRA_DEB_REVISION (Debian revision,
# default 1; the package test builds a higher one to upgrade to),
# UMBRA_DEB_FAST=1 (faster, weaker compression of the .deb: tests).
# Prints the path of each package on standard output, one per line.
set -euo pipefail
cd "$(dirname "$0")/.."
CARGO_DEB_VERSION=3.8.0
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/umbra-target}"
profile="${UMBRA_PACKAGE_PROFILE:-release}"
out="${UMBRA_PACKAGE_OUT:-$CARGO_TARGET_DIR/debian}"
revision="${UMBRA_DEB_REVISION:-1}"

if ! cargo deb --version 2>/dev/null | grep -qF "$CARGO_DEB_VERSION"; then
    echo "package: installing cargo-deb $CARGO_DEB_VERSION" >&2
    cargo install --locked --version "$CARGO_DEB_VERSION" cargo-deb >&2
fi

started=$(date +%s)
echo "package: building the binaries (profile $profile)" >&2
# The whole workspace, like setup.sh and the demo: the same feature set, so
# the same compiled dependencies (a narrower -p selection would build some twice).
cargo build --locked --profile "$profile" --workspace --bins >&2
echo "package: built in $(( $(date +%s) - started )) s" >&2

bin="$CARGO_TARGET_DIR/$profile"
assets="$bin/deb-assets"
rm -rf "$assets"
mkdir -p "$assets/umbra/man" "$assets/umbra/completions" "$assets/umbra-handshaker" "$assets/umbra-desktop"
# Manual pages and completions come from the CLI definition itself.
"$bin/umbra" man --out-dir "$assets/umbra/man" >/dev/null
gzip -9n "$assets/umbra/man/"*.1
"$bin/umbra" completions bash >"$assets/umbra/completions/umbra"
"$bin/umbra" completions zsh >"$assets/umbra/completions/_umbra"
"$bin/umbra" completions fish >"$assets/umbra/completions/umbra.fish"
# What the packages must declare besides GPL-3.0-or-later (deny.toml checks
# the same licences against the allowed list).
# The menu icon: the SVG for scalable themes, a 128 px PNG for the rest.
convert -background none -density 96 packaging/umbra-desktop/umbra-desktop.svg \
    -resize 128x128 "png32:$assets/umbra-desktop/umbra-desktop.png"
metadata=$(cargo metadata --locked --format-version 1 --filter-platform "$(rustc -vV | sed -n 's/^host: //p')")
for crate in umbra umbra-handshaker umbra-desktop; do
    python3 scripts/lib/third-party-licenses.py "$crate" <<<"$metadata" >"$assets/$crate/THIRD-PARTY-LICENSES"
done

mkdir -p "$out"
fast=()
[[ ${UMBRA_DEB_FAST:-0} == 1 ]] && fast=(--fast)
for crate in umbra umbra-handshaker umbra-desktop; do
    cargo deb --locked --no-build --profile "$profile" -p "$crate" "${fast[@]}" \
        --deb-revision "$revision" --output "$out" >&2
done
echo "package: done in $(( $(date +%s) - started )) s" >&2
# The desktop window (issue #18) gets its package here once it lands: a crate
# `umbra-desktop` with its own [package.metadata.deb], a .desktop entry and an
# icon (packaging/umbra-desktop/README.md).
ls -1 "$out"/umbra_*"-${revision}_"*.deb "$out"/umbra-handshaker_*"-${revision}_"*.deb \
    "$out"/umbra-desktop_*"-${revision}_"*.deb
