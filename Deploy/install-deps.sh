#!/usr/bin/env bash
# Installs the Debian packages Tributary builds against, when missing. Idempotent.
#   libopenblas-dev  matrix products (cblas_sgemm)
#   libzstd-dev      update compression
#   zlib1g-dev       gzip-compressed datasets (MNIST IDX), frame checksums
#   libpng-dev       PNG images: a U-Net's sample grids (tributary sample), PNG reading
#   libjpeg-dev      JPEG images (libjpeg-turbo): image-folder datasets
#   libsqlite3-dev   the coordinator's ledger (GRDB)
#   ocl-icd-opencl-dev  OpenCL headers and the ICD loader (GPU workers, TributaryOpenCL)
#   libclblast-dev   CLBlast, matrix products on OpenCL devices
#   pkg-config       lets SwiftPM find the libraries above
# With --tests (Deploy/test.sh), also what the tests need:
#   postgresql       a throw-away server for the PostgreSQL ledger tests (Deploy/test-postgres.sh
#                    starts its own socket-only cluster; Debian's default cluster is left alone)
#   systemd          systemd-analyze, which checks the units in Deploy/systemd (DeployFilesTests)
#   strace           the system calls the units' sandbox must allow, seen on a live run
#   python3-venv     a private Python for the validators below
#   pocl-opencl-icd  OpenCL on the CPU, so that the OpenCL kernel tests run for real without
#                    a GPU (they fail, not skip, when no OpenCL platform is found). Not a
#                    build dependency: it brings its own LLVM, which the build image need not carry
# and, without touching the system, in ${XDG_CACHE_HOME:-~/.cache}/tributary-test-tools:
#   venv/            kubernetes-validate (Deploy/kubernetes against the Kubernetes schema) and
#                    check-jsonschema (Deploy/compose against the Compose specification), from PyPI
#   bin/promtool     Prometheus' linter for /metrics (PromtoolTests), unpacked from Debian's
#                    prometheus package: installing that package would also start a Prometheus server
set -euo pipefail

packages=(libopenblas-dev libzstd-dev zlib1g-dev libpng-dev libjpeg-dev libsqlite3-dev ocl-icd-opencl-dev libclblast-dev pkg-config)
tests=0
for arg in "$@"; do
    case "$arg" in
        --tests) tests=1; packages+=(postgresql systemd strace python3-venv pocl-opencl-icd) ;;
        *) echo "usage: $0 [--tests]" >&2; exit 2 ;;
    esac
done

if [ "$(id -u)" -eq 0 ]; then
    sudo=()
elif command -v sudo >/dev/null 2>&1; then
    sudo=(sudo)
else
    sudo=(false)   # said below, only if something must be installed
fi
need_root() {
    if [ "${sudo[*]}" = false ]; then echo "error: need root (or sudo) to $*" >&2; exit 1; fi
}

missing=()
for p in "${packages[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
    echo "installing Debian packages: ${missing[*]}"
    need_root "install: ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    "${sudo[@]}" apt-get update -qq
    "${sudo[@]}" apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
[ "$tests" -eq 1 ] || exit 0

tools="${XDG_CACHE_HOME:-$HOME/.cache}/tributary-test-tools"
# Pinned, so that every machine validates against the same schemas; a new pin reinstalls.
pins="kubernetes-validate==1.37.0 check-jsonschema==0.39.0"
if [ "$(cat "$tools/venv/pins" 2>/dev/null)" != "$pins" ]; then
    echo "installing into $tools/venv: $pins"
    # Debian's own Python when there is one: its venv module comes from python3-venv above
    # (a pyenv or other python3 on PATH works as well).
    python=/usr/bin/python3
    [ -x "$python" ] || python=python3
    rm -rf "$tools/venv"
    "$python" -m venv "$tools/venv"
    # shellcheck disable=SC2086 # one argument per pin
    "$tools/venv/bin/python" -m pip install -q --disable-pip-version-check $pins
    echo "$pins" > "$tools/venv/pins"
fi

if [ ! -x "$tools/bin/promtool" ]; then
    echo "unpacking promtool into $tools/bin"
    work=$(mktemp -d)
    trap 'rm -rf "$work"' EXIT
    chmod 755 "$work"   # apt's download sandbox user must be able to write there
    if ! (cd "$work" && apt-get download -qq prometheus >/dev/null 2>&1); then
        need_root "update the package lists for prometheus"
        "${sudo[@]}" apt-get update -qq
        (cd "$work" && apt-get download -qq prometheus >/dev/null)
    fi
    dpkg-deb -x "$work"/prometheus_*.deb "$work/root"
    install -D -m 755 "$work/root/usr/bin/promtool" "$tools/bin/promtool"
fi
