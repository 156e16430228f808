#!/usr/bin/env python3
"""Peer benchmark: prometheus_client (Python) in multiprocess mode, same shape as benches/render.rs.

200 worker processes (simulated by switching the process identifier of the multiprocess value
class, so each fake worker gets its own counter_<pid>.db / histogram_<pid>.db files exactly as a
real gunicorn/uwsgi worker would) write 100,000 series in total: 80 % counters in 8 families
with 2 or 3 labels, 20 % histograms with 10 buckets in 2 families. Label values are unique per
series, as in the Rust bench, so the merged output has every series.

Timed: the scrape path a multiprocess app runs per request,
    registry = CollectorRegistry(); MultiProcessCollector(registry); generate_latest(registry)
Setup (writing the values) is not timed. Prints one JSON object.
"""

import argparse
import json
import os
import shutil
import statistics
import sys
import tempfile
import time
from importlib.metadata import version

# Multiprocess mode is chosen at import time: the directory must be set first.
MULTIPROC_DIR = tempfile.mkdtemp(prefix="otrs-bench-prom-")
os.environ["PROMETHEUS_MULTIPROC_DIR"] = MULTIPROC_DIR

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest  # noqa: E402
from prometheus_client import values  # noqa: E402
from prometheus_client.multiprocess import MultiProcessCollector  # noqa: E402

BUCKETS = [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 10.0]
METHODS = ["GET", "POST", "PUT", "DELETE"]
STATUSES = ["200", "201", "304", "404", "500"]
COUNTER_FAMILIES = 8
HISTOGRAM_FAMILIES = 2


def write_worker(pid, w, n):
    """Writes worker w's n series into the .db files of fake process `pid`."""
    # A fresh value class per fake process: its own files, no cross-talk with earlier workers
    # (switching the identifier of one class would re-read every value created so far).
    values.ValueClass = values.MultiProcessValue(process_identifier=lambda: pid)
    # New metric objects (not registered anywhere) so that children are created with the
    # value class of this worker; in a real worker process these would be module globals.
    counters = [
        Counter(
            f"bench_http_requests_{k}",
            "Benchmark counter family.",
            ["route", "status"] if k % 2 == 0 else ["route", "status", "method"],
            registry=None,
        )
        for k in range(COUNTER_FAMILIES)
    ]
    histograms = [
        Histogram(
            f"bench_http_request_duration_seconds_{k}",
            "Benchmark histogram family.",
            ["route", "method"],
            buckets=BUCKETS,
            registry=None,
        )
        for k in range(HISTOGRAM_FAMILIES)
    ]
    n_counters = n * 4 // 5
    for j in range(n):
        route = f"/api/w{w}/r{j}"
        method = METHODS[j % len(METHODS)]
        if j < n_counters:
            k = j % COUNTER_FAMILIES
            status = STATUSES[j % len(STATUSES)]
            if k % 2 == 0:
                c = counters[k].labels(route, status)
            else:
                c = counters[k].labels(route, status, method)
            c.inc(j % 17 + 1)
        else:
            h = histograms[j % HISTOGRAM_FAMILIES].labels(route, method)
            for v in (0.003, 0.07, 0.4, 3.0):
                h.observe(v * (j % 3 + 1))
    values.ValueClass.close_all_files()


def scrape():
    registry = CollectorRegistry()
    MultiProcessCollector(registry)
    return generate_latest(registry)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--workers", type=int, default=200)
    ap.add_argument("--series", type=int, default=100_000, help="total series")
    ap.add_argument("--reps", type=int, default=5, help="timed scrapes")
    args = ap.parse_args()
    per_worker = args.series // args.workers
    try:
        t0 = time.perf_counter()
        for w in range(args.workers):
            write_worker(1_000_000 + w, w, per_worker)
        setup = time.perf_counter() - t0
        files = len(os.listdir(MULTIPROC_DIR))
        db_bytes = sum(os.path.getsize(os.path.join(MULTIPROC_DIR, f)) for f in os.listdir(MULTIPROC_DIR))
        times = []
        out = b""
        for _ in range(args.reps):
            t = time.perf_counter()
            out = scrape()
            times.append(time.perf_counter() - t)
        series_out = sum(
            1
            for line in out.splitlines()
            if line
            and not line.startswith(b"#")
            and (b"_total{" in line or b"_count{" in line)
        )
        print(
            json.dumps(
                {
                    "series": per_worker * args.workers,
                    "series_out": series_out,
                    "workers": args.workers,
                    "files": files,
                    "db_bytes": db_bytes,
                    "reps": args.reps,
                    "scrape_seconds_median": statistics.median(times),
                    "scrape_seconds_min": min(times),
                    "bytes": len(out),
                    "setup_seconds": setup,
                    "prometheus_client": version("prometheus_client"),
                    "python": sys.version.split()[0],
                }
            )
        )
    finally:
        shutil.rmtree(MULTIPROC_DIR, ignore_errors=True)


if __name__ == "__main__":
    main()
