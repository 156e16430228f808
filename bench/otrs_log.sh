#!/usr/bin/env bash
# OTRS log reading throughput: `otrs-exporter follow-otrs-log --once --from-start` against
# mtail running an equivalent program (bench/mtail/otrs_log/otrs_log.mtail: same counter and
# labels, continuation lines skipped, malformed lines counted) over the same generated
# File-backend log, both pinned to one CPU core, in the same run.
set -euo pipefail
cd "$(dirname "$0")/.."
LINES=${LINES:-1000000}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
command -v mtail >/dev/null || { echo "mtail missing: apt-get install mtail" >&2; exit 1; }
cargo build --release --quiet
python3 bench/gen_otrs_log.py "$LINES" "$work/otrs.log"
printf '[segment]\npath = "%s/seg"\n[otrs_log]\nfile = "%s/otrs.log"\n' "$work" "$work" > "$work/config.toml"
now() { date +%s.%N; }
t0=$(now)
OTRS_EXPORTER_CONFIG="$work/config.toml" taskset -c 0 target/release/otrs-exporter follow-otrs-log --once --from-start 2>/dev/null
t1=$(now)
ours=$(echo "$t1 - $t0" | bc -l)
counted=$(OTRS_EXPORTER_CONFIG="$work/config.toml" target/release/otrs-exporter segment dump --json \
  | python3 -c 'import json,sys; d=json.load(sys.stdin); print(int(sum(s["value"] for s in d["series"] if s["family"]=="otrs_log_messages")))')
t0=$(now)
taskset -c 0 mtail --progs bench/mtail/otrs_log --logs "$work/otrs.log" --one_shot --one_shot_format=prometheus > "$work/mtail.out" 2>"$work/mtail.err"
t1=$(now)
theirs=$(echo "$t1 - $t0" | bc -l)
mtail_counted=$(awk '/^otrs_log_messages_total\{/ {s+=$NF} END {printf "%d", s}' "$work/mtail.out")
printf '\n%-34s %10s %14s %10s\n' "reader (1 core)" "seconds" "lines/s" "messages"
printf '%-34s %10.3f %14.0f %10s\n' "otrs-exporter follow-otrs-log" "$ours" "$(echo "$LINES / $ours" | bc -l)" "$counted"
printf '%-34s %10.3f %14.0f %10s\n' "mtail $(mtail --version 2>&1 | awk '{print $3; exit}')" "$theirs" "$(echo "$LINES / $theirs" | bc -l)" "$mtail_counted"
printf 'ratio mtail/otrs-exporter = %.1fx\n' "$(echo "$theirs / $ours" | bc -l)"
[ "$counted" = "$mtail_counted" ] || { echo "counts differ: $counted vs $mtail_counted" >&2; exit 1; }
