#!/usr/bin/env bash
# Ingest throughput: `otrs-exporter ingest` against mtail (Debian package `mtail`) running an
# equivalent program (bench/mtail/otrs.mtail: same families, labels, buckets and route rules)
# over the same generated 1M-line access log, both pinned to one CPU core, in the same run.
set -euo pipefail
cd "$(dirname "$0")/.."
LINES=${LINES:-1000000}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
command -v mtail >/dev/null || { echo "mtail missing: apt-get install mtail" >&2; exit 1; }
cargo build --release --quiet
python3 bench/gen_access_log.py "$LINES" "$work/access.log"
printf '[segment]\npath = "%s/seg"\n' "$work" > "$work/config.toml"

now() { date +%s.%N; }
t0=$(now)
OTRS_EXPORTER_CONFIG="$work/config.toml" taskset -c 0 target/release/otrs-exporter ingest --wait < "$work/access.log" 2>/dev/null
t1=$(now)
ours=$(echo "$t1 - $t0" | bc -l)
counted=$(OTRS_EXPORTER_CONFIG="$work/config.toml" target/release/otrs-exporter segment dump --json \
  | python3 -c 'import json,sys; d=json.load(sys.stdin); print(int(sum(s["value"] for s in d["series"] if s["family"]=="otrs_http_requests")))')

t0=$(now)
taskset -c 0 mtail --progs bench/mtail --logs "$work/access.log" --one_shot --one_shot_format=prometheus > "$work/mtail.out" 2>"$work/mtail.err"
t1=$(now)
theirs=$(echo "$t1 - $t0" | bc -l)
mtail_counted=$(awk '/^otrs_http_requests_total\{/ {s+=$NF} END {printf "%d", s}' "$work/mtail.out")

printf '\n%-28s %12s %14s %10s\n' "ingester (1 core)" "seconds" "lines/s" "counted"
printf '%-28s %12.3f %14.0f %10s\n' "otrs-exporter ingest" "$ours" "$(echo "$LINES / $ours" | bc -l)" "$counted"
printf '%-28s %12.3f %14.0f %10s\n' "mtail $(mtail --version 2>&1 | awk '{print $3; exit}')" "$theirs" "$(echo "$LINES / $theirs" | bc -l)" "$mtail_counted"
printf 'ratio mtail/otrs-exporter = %.1fx (target >= 10x; ours >= 1M lines/s)\n' "$(echo "$theirs / $ours" | bc -l)"
[ "$counted" = "$LINES" ] || { echo "otrs-exporter counted $counted of $LINES lines" >&2; exit 1; }
[ "$mtail_counted" = "$LINES" ] || { echo "mtail counted $mtail_counted of $LINES lines" >&2; exit 1; }
