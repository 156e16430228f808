#!/usr/bin/env bash
# The long versions of the reliability tests (CI runs them with smaller counts): the crash
# soak, segment damage, and hostile requests through Apache. Each prints its figures; they are
# also kept in target/tmp/reliability-*.txt.
#
#   SOAK_KILLS=5000 FLIP_SEEDS=1000 HOSTILE_REQUESTS=1000000 bash bench/soak.sh
#   ONLY=soak|faults|memory|hostile bash bench/soak.sh      # one of them
#
# Needs root for the tmpfs and Apache parts (like CI). The debug build is used, as in CI
# (faster to build; these are correctness runs, not benchmarks); PROFILE=release for release.
set -euo pipefail
cd "$(dirname "$0")/.."
export SOAK_KILLS=${SOAK_KILLS:-5000}
export FLIP_SEEDS=${FLIP_SEEDS:-1000}
export HOSTILE_REQUESTS=${HOSTILE_REQUESTS:-1000000}
export WORKER_SERIES=${WORKER_SERIES:-10000} WORKER_SCRAPES=${WORKER_SCRAPES:-240}
profile=()
[ "${PROFILE:-debug}" = release ] && profile=(--release)
run() { cargo test --locked "${profile[@]}" --test "$1" -- --nocapture --test-threads=1 "${@:2}"; }
case "${ONLY:-all}" in
  soak) run soak ;;
  faults) run faults random_byte_flips ;;
  memory) run faults long_running ;;
  hostile) run apache hostile ;;
  all) run soak; run faults random_byte_flips; run faults long_running; run apache hostile ;;
esac
dir=${CARGO_TARGET_DIR:-target}/tmp
cat "$dir"/reliability-soak.txt "$dir"/reliability-segment-damage.txt "$dir"/reliability-worker-memory.txt \
  "$dir"/reliability-hostile-front.txt 2>/dev/null || true
