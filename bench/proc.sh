#!/usr/bin/env bash
# Process collector cost: a parent with 200 `sleep` children stands in for a web server with
# 200 workers (processes.server_cmdline points at it), timed with examples/collect_bench over
# 200 collects. Reference: `ps` listing the same processes with the same fields.
set -euo pipefail
cd "$(dirname "$0")/.."
N=${N:-200}
work=$(mktemp -d)
cleanup() { [ -n "${parent:-}" ] && kill -- -"$parent" 2>/dev/null; rm -rf "$work"; }
trap cleanup EXIT
cargo build --release --quiet --example collect_bench
script="for i in \$(seq $N); do sleep 100000 & done; wait"
setsid bash -c "$script" &
parent=$!
while [ "$(pgrep -c -P "$parent" || true)" -lt "$N" ]; do sleep 0.05; done
printf '[segment]\npath = "%s/seg"\n[processes]\nserver_cmdline = "bash -c %s"\n' "$work" "$script" > "$work/config.toml"
echo "# $N children of pid $parent"
OTRS_EXPORTER_CONFIG="$work/config.toml" taskset -c 0 target/release/examples/collect_bench web_processes 200
t0=$(date +%s.%N)
for _ in $(seq 200); do ps -o pid=,ppid=,rss=,vsz=,utime=,stime=,nlwp=,lstart= --ppid "$parent" -p "$parent" > /dev/null; done
t1=$(date +%s.%N)
printf 'ps (same processes and fields, no fd counts): mean %.3f ms\n' "$(echo "($t1 - $t0) * 1000 / 200" | bc -l)"
