#!/usr/bin/env bash
# Runs the benchmarks of otrs-exporter and its Python peer on this machine, in one go, and
# prints a table of the figures and ratios (about 3-4 minutes on 2 cores).
#
#   bench/run.sh            # everything
#   PEER_REPS=5 bench/run.sh
#
# - cargo bench --bench segment : hot path (inc/observe) vs the prometheus crate
# - cargo bench --bench render  : scrape of 100k series over 200 workers, and after exited
#                                 workers were folded
# - bench/peer_prometheus_client.py : the same 100k series with prometheus_client in
#                                 multiprocess mode (venv under $CARGO_TARGET_DIR/bench-venv)
#
# The Rust benches write JSON summaries to $CARGO_TARGET_DIR/bench-summary/, the peer's JSON
# goes there too, and the table at the end is computed from those three files.
set -euo pipefail

cd "$(dirname "$0")/.."
ROOT=$PWD
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$ROOT/target}"
SUMMARY="$CARGO_TARGET_DIR/bench-summary"
VENV="$CARGO_TARGET_DIR/bench-venv"
PYTHON="${PYTHON:-python3}"
PEER_REPS="${PEER_REPS:-3}"
export OTRS_BENCH_SUMMARY_DIR="$SUMMARY"

rm -rf "$SUMMARY"
mkdir -p "$SUMMARY"

# Python venv for the peer (works as root and as a user; no system site-packages touched).
if [ ! -x "$VENV/bin/python" ]; then
    echo "== creating $VENV"
    "$PYTHON" -m venv "$VENV"
fi
if ! "$VENV/bin/python" -c 'import prometheus_client' 2>/dev/null \
    || ! "$VENV/bin/pip" freeze 2>/dev/null | grep -qxF -f bench/requirements.txt; then
    "$VENV/bin/pip" install --quiet --disable-pip-version-check -r bench/requirements.txt
fi

echo "== cargo bench --bench segment"
cargo bench --bench segment
echo "== cargo bench --bench render"
cargo bench --bench render
echo "== Python peer: prometheus_client multiprocess (reps=$PEER_REPS)"
"$VENV/bin/python" bench/peer_prometheus_client.py --workers 200 --series 100000 \
    --reps "$PEER_REPS" | tee "$SUMMARY/python.json"

"$VENV/bin/python" - "$SUMMARY" <<'EOF'
import json, os, platform, sys

d = sys.argv[1]
seg = json.load(open(os.path.join(d, "segment.json")))
ren = json.load(open(os.path.join(d, "render.json")))
py = json.load(open(os.path.join(d, "python.json")))
ns = seg["ns_per_op"]

rows = []
def row(what, ours, peer, ratio, note=""):
    rows.append((what, ours, peer, ratio, note))

def r(a, b):
    return f"{a / b:.2f}"

row("inc, 1 process (ns)", f"{ns['segment_inc']:.2f}",
    f"{ns['prometheus_intcounter_inc']:.2f} / {ns['prometheus_counter_f64_inc']:.2f}",
    f"{r(ns['segment_inc'], ns['prometheus_intcounter_inc'])} / {r(ns['segment_inc'], ns['prometheus_counter_f64_inc'])}",
    "ours/IntCounter, ours/Counter(f64)")
row("inc, contended (ns)", f"{ns['segment_inc_contended']:.2f}",
    f"{ns['prometheus_intcounter_inc_contended']:.2f} / {ns['prometheus_counter_f64_inc_contended']:.2f}",
    f"{r(ns['segment_inc_contended'], ns['prometheus_intcounter_inc_contended'])} / {r(ns['segment_inc_contended'], ns['prometheus_counter_f64_inc_contended'])}",
    "2nd process vs 2nd thread")
row("inc, contended by a thread (ns)", f"{ns['segment_inc_contended_by_thread']:.2f}", "", "",
    "segment, 2nd thread instead of process")
row("observe, 1 process (ns)", f"{ns['segment_observe']:.2f}",
    f"{ns['prometheus_histogram_observe']:.2f}",
    r(ns['segment_observe'], ns['prometheus_histogram_observe']), "ours/Histogram")
row("observe, contended (ns)", f"{ns['segment_observe_contended']:.2f}",
    f"{ns['prometheus_histogram_observe_contended']:.2f}",
    r(ns['segment_observe_contended'], ns['prometheus_histogram_observe_contended']),
    "2nd process vs 2nd thread")
row("observe, contended by a thread (ns)", f"{ns['segment_observe_contended_by_thread']:.2f}",
    "", "", "segment, 2nd thread instead of process")
ours_ms = ren["scrape_ms_median"]
py_ms = py["scrape_seconds_median"] * 1e3
ratio = py_ms / ours_ms
row(f"scrape {ren['series']} series / {ren['workers']} workers, cold (ms)", f"{ours_ms:.1f}",
    f"{py_ms:.1f}", f"{ratio:.1f}x", "python/ours, one-off read (CGI)" + ("" if ratio >= 50 else "  (below the 50x target)"))
warm_ms = ren["scrape_warm_ms_median"]
wratio = py_ms / warm_ms
row(f"scrape {ren['series']} series / {ren['workers']} workers, warm (ms)", f"{warm_ms:.1f}",
    f"{py_ms:.1f}", f"{wratio:.1f}x", "python/ours, FastCGI worker" + ("" if wratio >= 50 else "  (below the 50x target)"))
row("scrape output (MB)", f"{ren['bytes'] / 1e6:.1f}", f"{py['bytes'] / 1e6:.1f}", "",
    "ours has a worker label")
base = ren["exited"][0]["scrape_ms_median"]
for p in ren["exited"]:
    row(f"scrape after {p['cycles']} exited cycles, {p['exited_workers']} workers folded (ms)",
        f"{p['scrape_ms_median']:.1f}", "", f"{p['scrape_ms_median'] / base:.2f}",
        f"vs 0 cycles; {p['series_out']} series out")
row("gc(ZERO) of 200 dead workers (ms)", f"{ren['gc_ms_per_cycle_mean']:.0f}", "", "",
    f"{ren['dead_series_per_worker']} series each, mean per cycle")

w = [max(len(x[i]) for x in rows + [("what", "ours", "peer", "ratio", "")]) for i in range(5)]
print()
print(f"machine: {os.cpu_count()} CPUs, {platform.processor() or platform.machine()}, "
      f"Python {py['python']}, prometheus_client {py['prometheus_client']}")
hdr = ("what", "ours", "peer", "ratio", "note")
print("  ".join(h.ljust(w[i]) for i, h in enumerate(hdr)))
print("  ".join("-" * w[i] for i in range(5)))
for x in rows:
    print("  ".join(str(v).ljust(w[i]) for i, v in enumerate(x)))
EOF
