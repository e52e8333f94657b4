#!/usr/bin/env bash
# Installs the Debian packages Tributary builds against, when missing. Idempotent.
#   libopenblas-dev  matrix products (cblas_sgemm)
#   libzstd-dev      update compression
#   zlib1g-dev       gzip-compressed datasets (MNIST IDX), frame checksums
#   libsqlite3-dev   the coordinator's ledger (GRDB)
#   pkg-config       lets SwiftPM find the three above
# With --tests (Deploy/test.sh), also what the tests need:
#   postgresql       a throw-away server for the PostgreSQL ledger tests (Deploy/test-postgres.sh
#                    starts its own socket-only cluster; Debian's default cluster is left alone)
set -euo pipefail

packages=(libopenblas-dev libzstd-dev zlib1g-dev libsqlite3-dev pkg-config)
for arg in "$@"; do
    case "$arg" in
        --tests) packages+=(postgresql) ;;
        *) echo "usage: $0 [--tests]" >&2; exit 2 ;;
    esac
done
missing=()
for p in "${packages[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
[ ${#missing[@]} -eq 0 ] && exit 0

echo "installing Debian packages: ${missing[*]}"
if [ "$(id -u)" -eq 0 ]; then
    sudo=()
elif command -v sudo >/dev/null 2>&1; then
    sudo=(sudo)
else
    echo "error: need root (or sudo) to install: ${missing[*]}" >&2
    exit 1
fi
export DEBIAN_FRONTEND=noninteractive
"${sudo[@]}" apt-get update -qq
"${sudo[@]}" apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
