#!/usr/bin/env bash
# Install every build, test and benchmark dependency from Debian's packages. Idempotent: packages
# already present are skipped, and apt-get runs only when something is missing.
set -euo pipefail
pkgs=(
  # build
  build-essential cmake ninja-build pkg-config clang libclang-rt-14-dev
  libssl-dev libnghttp2-dev libyaml-cpp-dev nlohmann-json3-dev libre2-dev libxxhash-dev
  libldns-dev libhiredis-dev libgtest-dev libgmock-dev libbenchmark-dev
  # integration tests and benchmarks: real servers and clients
  curl nginx-light haproxy wrk nghttp2-client dnsutils redis-server keepalived iproute2
  openssl python3 python3-pytest procps iputils-ping netcat-openbsd
  # bench/dns.sh: dnsperf against fulcrum and NSD
  dnsperf nsd
  # the admin dashboard's browser test: Debian's Chromium, driven by playwright-core from npm
  chromium nodejs
)
missing=()
for p in "${pkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "deps: installing ${missing[*]}"
  SUDO=; [ "$(id -u)" -eq 0 ] || SUDO=sudo
  export DEBIAN_FRONTEND=noninteractive
  $SUDO apt-get update -qq
  $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
# playwright-core (pinned in tests/dashboard/package.json) drives /usr/bin/chromium; it downloads
# no browser of its own. Installed once, into the repo's tests/dashboard/node_modules.
here="$(cd "$(dirname "$0")/.." && pwd)"
if [ ! -d "$here/tests/dashboard/node_modules/playwright-core" ] && command -v npm >/dev/null; then
  echo "deps: npm install --prefix tests/dashboard"
  npm install --prefix "$here/tests/dashboard" --no-audit --no-fund --loglevel=error >/dev/null
fi
# Debian starts the services it installs; tests start their own instances on free ports.
for s in nginx haproxy redis-server keepalived nsd; do
  if command -v systemctl >/dev/null && systemctl is-active --quiet "$s" 2>/dev/null; then
    systemctl stop "$s" 2>/dev/null || true
  fi
done
exit 0
