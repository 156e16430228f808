#!/usr/bin/env bash
# CPU time a FastCGI worker spends per warm scrape of a 10k-series segment, this tree against
# an older commit, in the same run: both builds serve `serve --listen unix:` side by side and
# take turns answering REQUESTS cgi-fcgi requests (all default collectors) per round; each
# round reads the server's utime + stime from /proc. CPU time, unlike instruction counts
# (bench/instructions.sh), shows what cache misses cost; unlike wall-clock latency
# (bench/scrape.sh), it leaves out the client and the web server. The median round decides.
# Usage: bash bench/cpu.sh BASE_COMMIT [ROUNDS] [REQUESTS]   (needs cgi-fcgi: apt-get install libfcgi-bin)
set -euo pipefail
cd "$(dirname "$0")/.."
BASE=${1:?usage: bash bench/cpu.sh BASE_COMMIT [ROUNDS] [REQUESTS]}
ROUNDS=${2:-5}
REQUESTS=${3:-300}
METRICS=/otrs/nph-genericinterface.pl/Webservice/Prometheus/metrics
command -v cgi-fcgi >/dev/null || { echo "cpu: cgi-fcgi missing (apt-get install libfcgi-bin)" >&2; exit 1; }

ROOT=$PWD
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$ROOT/target}
cargo build --release --quiet --bin otrs-exporter --example fill_segment
NOW_BIN=$CARGO_TARGET_DIR/release/otrs-exporter
FILL=$CARGO_TARGET_DIR/release/examples/fill_segment
# The base commit, built in a worktree of its own (see bench/common.sh).
source bench/common.sh
base_worktree "$BASE"
(cd "$WT" && CARGO_TARGET_DIR=$WT/target cargo build --release --quiet --bin otrs-exporter)
BASE_BIN=$WT/target/release/otrs-exporter
temp_segment cpu 10000

serve() { # BIN NAME: starts a server on $T/NAME.sock; its PID is the last in PIDS
  "$1" serve --listen "unix:$T/$2.sock" </dev/null >/dev/null 2>"$T/$2.log" &
  PIDS+=($!)
  for _ in $(seq 100); do [ -S "$T/$2.sock" ] && return 0; sleep 0.05; done
  echo "cpu: $2 server did not start: $(cat "$T/$2.log")" >&2
  exit 1
}
serve "$BASE_BIN" base; BASE_PID=${PIDS[-1]}
serve "$NOW_BIN" now; NOW_PID=${PIDS[-1]}
TICK=$(getconf CLK_TCK)
ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }
requests() { # NAME COUNT
  for _ in $(seq "$2"); do
    REQUEST_METHOD=GET SCRIPT_NAME=$METRICS REQUEST_URI=$METRICS \
      cgi-fcgi -bind -connect "$T/$1.sock" >/dev/null
  done
}
# CPU ms per request of one round of NAME (server PID).
round() {
  local a b
  a=$(ticks "$2"); requests "$1" "$REQUESTS"; b=$(ticks "$2")
  python3 -c "print(f'{($b - $a) * 1000 / $TICK / $REQUESTS:.2f}')"
}
requests base 20; requests now 20 # warm: plans, render runs, collector threads
B=(); N=()
for r in $(seq "$ROUNDS"); do
  B+=("$(round base "$BASE_PID")"); N+=("$(round now "$NOW_PID")")
  echo "round $r: base ${B[-1]} ms, now ${N[-1]} ms" >&2
done
median() { printf '%s\n' "$@" | sort -g | awk '{v[NR] = $1} END {print v[int((NR + 1) / 2)]}'; }
MB=$(median "${B[@]}"); MN=$(median "${N[@]}")
echo "CPU per warm FastCGI scrape (10k series, all default collectors, $ROUNDS rounds of $REQUESTS):"
echo "base $BASE_REV: median $MB ms (rounds ${B[*]})"
echo "now $(git rev-parse --short HEAD)$(git diff --quiet || echo '+changes'): median $MN ms (rounds ${N[*]})"
python3 -c "print(f'now/base: {$MN / $MB:.2f}x')"
echo "machine: $(nproc) CPUs ($(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs))"
