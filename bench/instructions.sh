#!/usr/bin/env bash
# Instructions per scrape of a 10k-series segment, this tree against an older commit, counted
# by valgrind's callgrind: repeatable whatever else the machine does (wall clock on this VM
# swings about 3x with the host). Both builds are driven by this tree's
# examples/service_scrape.rs and read the same segment.
#   cold CGI scrape        the binary exec'd with a CGI environment (whole process)
#   warm scrape            a FastCGI worker's steady state: Service::scrape 21 times minus
#                          11 times, divided by 10 (collector threads included)
#   FastCGI request        `serve --listen unix:` answering 20 minus 10 cgi-fcgi requests,
#                          divided by 10 (the whole server process: accept, scrape, send)
# Each with collect[]=segment (the 10k series) and, where the build can run them under
# valgrind, with every default collector.
# Usage: bash bench/instructions.sh BASE_COMMIT [SERIES]   (needs valgrind, cgi-fcgi; a few minutes)
set -euo pipefail
cd "$(dirname "$0")/.."
BASE=${1:?usage: bash bench/instructions.sh BASE_COMMIT [SERIES]}
SERIES=${2:-10000}
METRICS=/otrs/nph-genericinterface.pl/Webservice/Prometheus/metrics
for tool in valgrind cgi-fcgi git; do
  command -v "$tool" >/dev/null || { echo "instructions: $tool missing (apt-get install valgrind libfcgi-bin)" >&2; exit 1; }
done

ROOT=$PWD
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$ROOT/target}
cargo build --release --quiet --bin otrs-exporter --example fill_segment --example service_scrape
NOW_BIN=$CARGO_TARGET_DIR/release/otrs-exporter
NOW_DRV=$CARGO_TARGET_DIR/release/examples/service_scrape
FILL=$CARGO_TARGET_DIR/release/examples/fill_segment

# The base commit, built in a worktree of its own (see bench/common.sh).
source bench/common.sh
base_worktree "$BASE"
cp examples/service_scrape.rs "$WT/examples/service_scrape.rs"
(cd "$WT" && CARGO_TARGET_DIR=$WT/target cargo build --release --quiet --bin otrs-exporter --example service_scrape)
BASE_BIN=$WT/target/release/otrs-exporter
BASE_DRV=$WT/target/release/examples/service_scrape
temp_segment instr "$SERIES"

# Total instructions of one callgrind run (empty if the program died under valgrind).
ir() {
  local out=$T/cg.$RANDOM
  if valgrind --tool=callgrind --callgrind-out-file="$out" "$@" >/dev/null 2>"$out.err" </dev/null; then
    sed -n 's/.*I *refs: *//p' "$out.err" | tr -d ,
  fi
}
cold() { # BIN QUERY
  QUERY_STRING=$2 GATEWAY_INTERFACE=CGI/1.1 REQUEST_METHOD=GET SCRIPT_NAME=$METRICS ir "$1"
}
warm() { # DRIVER QUERY
  local a b
  a=$(ir "$1" 11 "$2"); b=$(ir "$1" 21 "$2")
  if [ -n "$a" ] && [ -n "$b" ]; then echo $(((b - a) / 10)); fi
}
fcgi() { # BIN QUERY
  local total=() n sock pid dead=0
  for n in 10 20; do
    sock=$T/fcgi.$RANDOM.sock  # a fresh path: a stale socket would look ready
    valgrind --tool=callgrind --callgrind-out-file="$T/fcgi.$n.cg" "$1" serve --listen "unix:$sock" \
      >/dev/null 2>"$T/fcgi.$n.err" &
    pid=$!
    for _ in $(seq 600); do grep -q "serving FastCGI" "$T/fcgi.$n.err" && break; sleep 0.1; done
    for _ in $(seq "$n"); do
      QUERY_STRING=$2 REQUEST_METHOD=GET SCRIPT_NAME=$METRICS REQUEST_URI="$METRICS?$2" \
        cgi-fcgi -bind -connect "$sock" >/dev/null 2>&1 || true
    done
    # Already gone: it died under valgrind (no meaningful count).
    kill -TERM "$pid" 2>/dev/null || dead=1
    wait "$pid" 2>/dev/null || true
    total+=("$(sed -n 's/.*I *refs: *//p' "$T/fcgi.$n.err" | tr -d ,)")
  done
  if [ "$dead" = 0 ] && [ -n "${total[0]}" ] && [ -n "${total[1]}" ]; then
    echo $(((total[1] - total[0]) / 10))
  fi
}

fmt() { if [ -n "$1" ]; then python3 -c "print(f'{$1/1e6:.1f} M')"; else echo "n/a"; fi; }
ratio() { if [ -n "$1" ] && [ -n "$2" ]; then python3 -c "print(f'{$2/$1:.2f}x')"; else echo ""; fi; }
row() { # LABEL BASE NOW
  echo "| $1 | $(fmt "$2") | $(fmt "$3") | $(ratio "$2" "$3") |"
}

echo "instructions per scrape, $SERIES series over 20 workers; base $BASE_REV, now $(git rev-parse --short HEAD)$(git diff --quiet || echo '+changes')"
echo
echo "| what | base | now | now/base |"
echo "|---|---|---|---|"
S='collect[]=segment'
row "cold CGI scrape, segment only (whole process)" "$(cold "$BASE_BIN" "$S")" "$(cold "$NOW_BIN" "$S")"
row "cold CGI scrape, all collectors" "$(cold "$BASE_BIN" "")" "$(cold "$NOW_BIN" "")"
row "warm scrape, segment only" "$(warm "$BASE_DRV" "$S")" "$(warm "$NOW_DRV" "$S")"
row "warm scrape, all collectors" "$(warm "$BASE_DRV" "")" "$(warm "$NOW_DRV" "")"
row "FastCGI request, segment only (whole server)" "$(fcgi "$BASE_BIN" "$S")" "$(fcgi "$NOW_BIN" "$S")"
row "FastCGI request, all collectors" "$(fcgi "$BASE_BIN" "")" "$(fcgi "$NOW_BIN" "")"
echo
echo "(n/a: that build dies under valgrind there; 3f98061 and older read the auxiliary vector"
echo " through procfs/rustix, which valgrind cannot follow)"
