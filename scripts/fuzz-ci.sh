#!/usr/bin/env bash
# Short fuzz runs for CI: every cargo-fuzz target for FUZZ_SECONDS (default 20) each, starting
# from the committed corpus. New inputs go to a temporary directory (the checkout stays clean);
# a crash fails the script and leaves its reproducer in fuzz/artifacts/<target>/ (commit it to
# fuzz/regressions/<target>/ once fixed). Needs cargo-fuzz (scripts/setup.sh installs it).
# Uses the nightly toolchain if rustup has one, else stable with RUSTC_BOOTSTRAP=1 (cargo-fuzz
# needs -Z flags).
set -euo pipefail
cd "$(dirname "$0")/.."
seconds="${FUZZ_SECONDS:-20}"
command -v cargo-fuzz >/dev/null 2>&1 || { echo "fuzz-ci: cargo-fuzz missing (run scripts/setup.sh)" >&2; exit 1; }
if rustup toolchain list 2>/dev/null | grep -q '^nightly'; then
  fuzz=(cargo +nightly fuzz)
else
  export RUSTC_BOOTSTRAP=1
  fuzz=(cargo fuzz)
fi
# Its own target dir inside fuzz/ (gitignored): the instrumented build never mixes with the
# ordinary one.
export CARGO_TARGET_DIR="$PWD/fuzz/target"
"${fuzz[@]}" build -O >/dev/null 2>&1 || "${fuzz[@]}" build -O
tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT
for target in $("${fuzz[@]}" list); do
  mkdir -p "$tmp/$target"
  log="$tmp/$target.log"
  if ! "${fuzz[@]}" run -O "$target" "$tmp/$target" "fuzz/corpus/$target" -- \
      -max_total_time="$seconds" -print_final_stats=1 >"$log" 2>&1; then
    tail -n 40 "$log" >&2
    echo "fuzz-ci: $target FAILED; reproducer in fuzz/artifacts/$target/" >&2
    exit 1
  fi
  runs=$(grep -o 'stat::number_of_executed_units: *[0-9]*' "$log" | grep -o '[0-9]*$' || echo '?')
  cov=$(grep -o 'cov: [0-9]*' "$log" | tail -1 || true)
  echo "fuzz-ci: $target ok: $runs executions in ${seconds}s, $cov"
done
