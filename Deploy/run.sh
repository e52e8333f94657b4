#!/usr/bin/env bash
# The main job: installs what is missing, builds Tributary (release) and runs the demo:
# a coordinator and three worker processes on loopback train a small GPT on a built-in
# corpus (nothing to download), printing the status URL and the loss as it falls.
# Ctrl-C stops everything cleanly.
#   Deploy/run.sh                            # built-in arithmetic corpus
#   Deploy/run.sh --data path/to/input.txt   # any text file (or .bin tokens, or an MNIST directory)
#   Deploy/run.sh --workers 5 --rounds 1000  # options go to `tributary demo`
set -euo pipefail
cd "$(dirname "$0")/.."
bash Deploy/install-deps.sh
swift build -c release --product tributary
exec .build/release/tributary demo "$@"
