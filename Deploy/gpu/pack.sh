#!/usr/bin/env bash
# Builds a tributary binary that runs on a machine without Swift (the Swift runtime
# linked in) and packs it with the shared libraries it loads into .gpu/tributary.tar.gz
# at the repository's root: what a GPU machine needs to run Deploy/gpu/measure.sh.
#   Deploy/gpu/pack.sh        # then carry .gpu (and Deploy/gpu) to the GPU machine
set -euo pipefail
cd "$(dirname "$0")/../.."
bash Deploy/install-deps.sh
swift build -c release --product tributary --static-swift-stdlib --build-path .build-static
rm -rf .gpu && mkdir -p .gpu/lib
cp .build-static/release/tributary .gpu/
# Every library the binary loads except the C library's own and the GPU driver's: the
# OpenCL ICD loader comes along, the vendor's OpenCL library is the machine's.
ldd .gpu/tributary | awk '/=> \// { print $3 }' | while read -r lib; do
    case "$(basename "$lib")" in
        libc.so*|libm.so*|libpthread.so*|libdl.so*|librt.so*|ld-linux*|libgcc_s.so*|libstdc++.so*) ;;
        *) cp -L "$lib" .gpu/lib/ ;;
    esac
done
# Stripped and gzipped to fit what a GPU machine is sent (64 MiB with the working tree):
# about 50 MB. measure.sh unpacks it there.
strip .gpu/tributary
tar -C .gpu -czf .gpu/tributary.tar.gz tributary lib
rm -rf .gpu/tributary .gpu/lib
echo "packed: .gpu/tributary.tar.gz, $(du -h .gpu/tributary.tar.gz | cut -f1)"
