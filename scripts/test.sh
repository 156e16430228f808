#!/usr/bin/env bash
# The test command: prepares the machine (scripts/setup.sh), then runs every test.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
figures=${CARGO_TARGET_DIR:-target}/tmp
rm -f "$figures"/reliability-*.txt
cargo test --locked "$@"
# The reliability tests' figures (cargo hides the output of passing tests).
for f in "$figures"/reliability-*.txt; do
  if [ -e "$f" ]; then cat "$f"; fi
done
