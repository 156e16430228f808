#!/usr/bin/env python3
"""Renders a dashboard's panel data as one PNG laid out like the Grafana dashboard.

Input: a JSON file written by tests/dashboards.rs, with the dashboard title and, per panel, its
type, title, unit, gridPos and the series Prometheus returned for its queries
(`{"legend": ..., "points": [[unix_seconds, value], ...]}`). Output: the PNG path given after it.
Only matplotlib (Debian: python3-matplotlib) is needed. This is a look at real data through
the dashboard's queries, not a Grafana replacement: no Grafana server can be installed from
the package registries the project uses.

Usage: render_panels.py INPUT.json OUTPUT.png [INPUT.json OUTPUT.png ...]
"""

import json
import math
import sys

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.gridspec import GridSpec  # noqa: E402

UNITS = {
    "s": (1, "s"),
    "bytes": (1 / 1048576, "MiB"),
    "percentunit": (100, "%"),
    "reqps": (1, "req/s"),
}


def fmt(value, unit):
    scale, suffix = UNITS.get(unit, (1, ""))
    v = value * scale
    if v != 0 and (abs(v) >= 10000 or abs(v) < 0.01):
        text = f"{v:.3g}"
    else:
        text = f"{v:.2f}".rstrip("0").rstrip(".")
    return f"{text} {suffix}".strip()


def main():
    args = sys.argv[1:]
    if not args or len(args) % 2:
        sys.exit(__doc__)
    for src, out in zip(args[::2], args[1::2]):
        render(src, out)


def render(src, out):
    with open(src) as f:
        dash = json.load(f)
    panels = dash["panels"]
    rows = max(p["gridPos"]["y"] + p["gridPos"]["h"] for p in panels)
    height = rows * 0.42 + 1
    fig = plt.figure(figsize=(24, height), dpi=50)
    fig.suptitle(dash["title"], fontsize=20, x=0.01, y=1 - 0.15 / height, ha="left", va="top")
    grid = GridSpec(rows, 24, figure=fig, hspace=2.2, wspace=1.2, top=1 - 0.9 / height,
                    bottom=0.4 / height, left=0.04, right=0.99)
    for p in panels:
        g = p["gridPos"]
        if p["type"] == "row":
            ax = fig.add_subplot(grid[g["y"], :])
            ax.axis("off")
            ax.text(0, 0.5, p["title"], fontsize=15, weight="bold", va="center")
            continue
        ax = fig.add_subplot(grid[g["y"] : g["y"] + g["h"], g["x"] : g["x"] + g["w"]])
        ax.set_title(p["title"], fontsize=12, loc="left")
        series = p["series"]
        unit = p.get("unit", "short")
        if p["type"] == "stat":
            ax.axis("off")
            last = [s["points"][-1][1] for s in series if s["points"]]
            text = fmt(last[0], unit) if last else "no data"
            ax.text(0.5, 0.45, text, fontsize=26, ha="center", va="center", weight="bold")
            continue
        t0 = min((s["points"][0][0] for s in series if s["points"]), default=0)
        for s in series[:12]:
            xs = [pt[0] - t0 for pt in s["points"]]
            scale = UNITS.get(unit, (1, ""))[0]
            ys = [pt[1] * scale if math.isfinite(pt[1]) else float("nan") for pt in s["points"]]
            # A series that appeared late may have one point: draw it as a marker.
            ax.plot(xs, ys, linewidth=1.2, marker="o" if len(xs) < 3 else None,
                    markersize=4, label=s["legend"][:48])
        ax.set_xlabel("seconds", fontsize=8)
        suffix = UNITS.get(unit, (1, ""))[1]
        if suffix:
            ax.set_ylabel(suffix, fontsize=8)
        ax.tick_params(labelsize=8)
        ax.grid(alpha=0.3)
        if series:
            ax.legend(fontsize=7, loc="upper left", ncol=2 if len(series) > 4 else 1, framealpha=0.6)
        else:
            ax.text(0.5, 0.5, "no data", ha="center", va="center", transform=ax.transAxes)
    fig.savefig(out)
    plt.close(fig)


if __name__ == "__main__":
    main()
