#!/usr/bin/env bash
# The main job: installs what is missing, builds Tributary (release) and trains a small
# GPT, printing the loss as it falls, then samples from the checkpoint it wrote.
#   Deploy/run.sh                         # built-in arithmetic corpus, nothing to download
#   DATA=path/to/input.txt Deploy/run.sh  # any text file (character-level)
#   Deploy/run.sh --steps 2000 ...        # extra options go to `tributary train`
set -euo pipefail
cd "$(dirname "$0")/.."
bash Deploy/install-deps.sh
swift build -c release --product tributary
bin=.build/release/tributary
out=${OUT:-.tributary-run}
data=${DATA:-builtin:arithmetic}
"$bin" train --data "$data" --out "$out" --steps 1500 --lr 2e-3 --eval-interval 300 --log-interval 100 "$@"
echo
echo "--- sample from $out ---"
prompt="12+"
[ "$data" = builtin:arithmetic ] || prompt=$'\n'
"$bin" sample --checkpoint "$out" --prompt "$prompt" --tokens 120 --temperature 0
