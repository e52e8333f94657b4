#!/usr/bin/env bash
# Builds and runs the whole test suite (what CI runs). Tests that need ../shared skip
# cleanly when it is absent.
set -euo pipefail
cd "$(dirname "$0")/.."
bash Deploy/install-deps.sh
swift build --build-tests
swift test --skip-build
