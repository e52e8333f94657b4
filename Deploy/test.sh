#!/usr/bin/env bash
# Builds and runs the whole test suite (what CI runs). Tests that need ../shared skip
# cleanly when it is absent. The PostgreSQL ledger tests get a throw-away server
# (Deploy/test-postgres.sh), stopped and removed on exit whatever happens.
set -euo pipefail
cd "$(dirname "$0")/.."
bash Deploy/install-deps.sh --tests
swift build --build-tests

pgdir=$(bash Deploy/test-postgres.sh start)
trap 'bash Deploy/test-postgres.sh stop "$pgdir"' EXIT
trap 'exit 130' INT TERM  # so that the EXIT trap runs on Ctrl-C and kill too
TRIBUTARY_TEST_POSTGRES_URL=$(bash Deploy/test-postgres.sh url "$pgdir")
export TRIBUTARY_TEST_POSTGRES_URL
swift test --skip-build "$@"
