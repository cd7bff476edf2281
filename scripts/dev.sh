#!/usr/bin/env bash
# One entry point for a fresh Debian bookworm machine (run as root, or with sudo available):
#   bash scripts/dev.sh demo   install what banger needs, build, then pull a sample image end to end
#   bash scripts/dev.sh test   install what the tests need, build, then run every test
# Both are idempotent: a second run installs nothing new.
set -euo pipefail
cd "$(dirname "$0")/.."

PNPM_VERSION=10.34.8
APT_PACKAGES=(
  # banger itself
  e2fsprogs
  # the test harness: a real registry, real image tools, an htpasswd for the auth registry
  docker-registry skopeo umoci debootstrap apache2-utils zstd attr libcap2-bin
  # guest-inject: shellcheck on the assets, busybox to run them under its sh and to boot a
  # busybox tree; the boot test: qemu, a Debian kernel, ssh
  shellcheck busybox qemu-system-x86 qemu-utils linux-image-amd64 openssh-client
  # the terminal test, native module builds (better-sqlite3 compiles from source here)
  tmux python3 make g++ git ca-certificates
)

sudo_() { if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi; }

install_system() {
  local missing=()
  for p in "${APT_PACKAGES[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
  done
  if [ ${#missing[@]} -gt 0 ]; then
    echo "installing: ${missing[*]}"
    sudo_ apt-get update -q
    sudo_ env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${missing[@]}"
  fi
  # Node 20's corepack rejects current pnpm signatures here: pin pnpm through npm instead.
  if [ "$(pnpm --version 2>/dev/null || true)" != "$PNPM_VERSION" ]; then
    sudo_ npm install -g "pnpm@$PNPM_VERSION"
  fi
}

install_node() {
  pnpm install --frozen-lockfile
  pnpm build
}

# The tests run banger as an unprivileged user (banger must not need root). That user has to
# reach the checkout, so every parent directory needs the search (x) bit for others.
allow_test_user() {
  [ "$(id -u)" = 0 ] || return 0
  local d
  d=$(pwd)
  while [ "$d" != / ]; do
    [ -n "$(find "$d" -maxdepth 0 -perm -o=x)" ] || chmod o+x "$d"
    d=$(dirname "$d")
  done
}

case "${1:-}" in
  demo)
    install_system
    install_node
    allow_test_user
    node scripts/demo.mjs
    ;;
  test)
    install_system
    install_node
    allow_test_user
    pnpm test
    ;;
  *)
    echo "usage: bash scripts/dev.sh demo|test" >&2
    exit 2
    ;;
esac
