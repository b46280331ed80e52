#!/usr/bin/env bash
# Installs the Debian packages Umbra needs to build and test:
#  - libssl-dev, pkg-config: sequoia's crypto-openssl backend and SQLCipher link libcrypto
#  - libclang-dev: bindgen for C backends
#  - gnupg: the GnuPG interoperability tests
#  - tor: the C tor relays of the local test network (tests, demo, benchmarks)
#  - tmux: the terminal UI end-to-end test
#  - onionshare-cli, curl: the OnionShare comparison (umbra-testnet's OnionShare and
#    CTorClient::fetch: OnionShare shares a file over the local network, curl downloads it)
#  - postgresql: the Handshaker's PostgreSQL backend; its tests start their own server
#    (initdb + postgres in a temp dir, Unix socket only), never the system service
#  - dpkg-dev, python3, systemd: the Debian packages (dpkg-shlibdeps finds their
#    library dependencies, python3 lists their licences, systemd-analyze checks
#    the units; scripts/package.sh, scripts/package-test.sh)
#  - libvulkan1, mesa-vulkan-drivers: the desktop window (umbra-desktop) renders with wgpu;
#    without a GPU, Mesa's lavapipe renders on the CPU (its tests' image snapshots too)
#  - libxkbcommon-x11-0, libx11-xcb1, libxcursor1, libxrandr2, libxi6: loaded by the
#    window's X11 backend (winit) at run time
#  - desktop-file-utils: the package test validates the window's menu entry
#  - xvfb, xdotool, imagemagick: the window's end-to-end test runs it on a virtual X
#    display, types into it (real X input) and takes a screenshot
set -euo pipefail
PKGS=(libclang-dev libssl-dev pkg-config gnupg tor tmux onionshare-cli curl ca-certificates postgresql
  dpkg-dev python3 systemd
  libvulkan1 mesa-vulkan-drivers libxkbcommon-x11-0 libx11-xcb1 libxcursor1 libxrandr2 libxi6
  xvfb xdotool imagemagick desktop-file-utils)
missing=()
for p in "${PKGS[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ "${#missing[@]}" -eq 0 ]; then
  echo "install-deps: all packages present"
  exit 0
fi
SUDO=""
if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"
# Debian starts a system tor service on install; Umbra never uses it.
$SUDO systemctl disable --now tor >/dev/null 2>&1 || true
# Likewise the system PostgreSQL cluster: the tests run their own server.
$SUDO systemctl disable --now postgresql >/dev/null 2>&1 || true
