#!/usr/bin/env bash
# Installs the Debian packages Tributary builds against, when missing. Idempotent.
#   libopenblas-dev  matrix products (cblas_sgemm)
#   libzstd-dev      update compression
#   zlib1g-dev       gzip-compressed datasets (MNIST IDX), frame checksums
#   libsqlite3-dev   the coordinator's ledger (GRDB)
#   pkg-config       lets SwiftPM find the three above
set -euo pipefail

packages=(libopenblas-dev libzstd-dev zlib1g-dev libsqlite3-dev pkg-config)
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
