#!/usr/bin/env bash
# The test command: prepares the machine (scripts/setup.sh), then runs every test.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
cargo test --locked "$@"
