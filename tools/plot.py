#!/usr/bin/env python3
"""chorus plot: curves of metrics.jsonl from run and sweep folders.

Run by `chorus plot` (tools/plot.cpp), which finds this file beside the binary
or in PREFIX/share/chorus. One line per run folder (holds metrics.jsonl); a
sweep folder (chorus sweep) or a point of one (seed-*/ folders) gives one line
per point: the mean over its seeds, with a band (min-max by default, or
mean +- sample std with --band std) over them. Seeds evaluated at different x
(wall time, async protocols) are interpolated onto the x values they share.
Lines are labelled by the config keys that differ between them.
"""
import argparse
import json
import os
import sys

X_KEYS = {"steps": "step", "epochs": "epoch", "wall_s": "wall_s", "bytes": "bytes_sent",
          "samples": None}
X_LABELS = {"steps": "protocol step", "epochs": "epoch", "wall_s": "wall time (s)",
            "bytes": "bytes sent", "samples": "samples processed"}


def fail(msg, status=1):
    print("chorus plot: " + msg, file=sys.stderr)
    sys.exit(status)


def parse_limits(flag, text, log):
    """(lo, hi) from "LO,HI", or None; a clear error (status 2) otherwise."""
    if text is None:
        return None
    parts = text.split(",")
    try:
        lo, hi = (float(p) for p in parts) if len(parts) == 2 else (None, None)
    except ValueError:
        lo = hi = None
    if lo is None or not (lo < hi) or lo != lo or hi != hi or abs(lo) == float("inf") \
            or abs(hi) == float("inf"):
        fail("%s '%s': give two finite numbers LO,HI with LO < HI" % (flag, text), 2)
    if log and lo <= 0:
        fail("%s '%s': a log axis needs LO > 0" % (flag, text), 2)
    return lo, hi


def read_json(path):
    try:
        with open(path) as f:
            return json.load(f)
    except (OSError, ValueError):
        return None


def read_rows(path):
    rows = []
    with open(path) as f:
        for line in f:
            line = line.strip()
            if not line:
                continue
            try:
                rows.append(json.loads(line))
            except ValueError:
                break  # a torn last line of a running or killed run
    return rows


def is_run(d):
    return os.path.isfile(os.path.join(d, "metrics.jsonl"))


def seed_dirs(d):
    try:
        names = sorted(os.listdir(d))
    except OSError:
        return []
    return [os.path.join(d, n) for n in names if n.startswith("seed-") and is_run(os.path.join(d, n))]


def discover(d):
    """[(name, [run dirs])]: one entry per line the folder gives."""
    if not os.path.isdir(d):
        fail("%s: no such folder" % d, 2)
    if is_run(d):
        return [(os.path.basename(os.path.normpath(d)), [d])]
    seeds = seed_dirs(d)
    if seeds:
        return [(os.path.basename(os.path.normpath(d)), seeds)]
    summary = read_json(os.path.join(d, "summary.json"))
    if isinstance(summary, dict) and isinstance(summary.get("points"), list):
        names = [p.get("point") for p in summary["points"] if isinstance(p, dict)]
    else:
        names = sorted(os.listdir(d))
    lines = []
    for n in names:
        sub = os.path.join(d, str(n))
        if is_run(sub):
            lines.append((n, [sub]))
        elif seed_dirs(sub):
            lines.append((n, seed_dirs(sub)))
    if not lines:
        fail("no runs in %s (expected metrics.jsonl, seed-*/ folders, or a sweep's point "
             "folders)" % d, 2)
    return lines


def flat_config(run_dir):
    doc = read_json(os.path.join(run_dir, "config.json")) or {}
    cfg = dict(doc.get("config", {}))
    cfg.update(cfg.pop("options", {}) or {})
    for k in ("out", "seed"):
        cfg.pop(k, None)
    return cfg, doc


def curve(run_dir, x, y):
    rows = read_rows(os.path.join(run_dir, "metrics.jsonl"))
    if not rows:
        fail("%s/metrics.jsonl has no rows" % run_dir)
    if not any(y in r for r in rows):
        keys = sorted({k for r in rows for k in r})
        fail("metric '%s' is not in %s/metrics.jsonl (it has: %s)" % (y, run_dir, ", ".join(keys)), 2)
    scale = None
    if x == "samples":
        _, doc = flat_config(run_dir)
        scale = doc.get("train_size")
        if not scale:
            fail("--x samples needs train_size from %s/config.json" % run_dir)
    xs, ys = [], []
    for r in rows:
        yv = r.get(y)
        xv = r.get("epoch") * scale if scale and r.get("epoch") is not None else r.get(X_KEYS[x])
        if isinstance(yv, (int, float)) and isinstance(xv, (int, float)):
            xs.append(float(xv))
            ys.append(float(yv))
    return xs, ys


def main():
    ap = argparse.ArgumentParser(prog="chorus plot", description=__doc__.split("\n\n")[1],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("dirs", nargs="+", metavar="DIR", help="run, point or sweep folders")
    ap.add_argument("--x", default="steps", choices=sorted(X_KEYS), help="x axis [steps]")
    ap.add_argument("--y", default="test_acc",
                    help="a key of metrics.jsonl: test_acc, test_loss, train_loss, "
                         "consensus_distance, ... [test_acc]")
    ap.add_argument("--out", help="the figure: .png, .svg or .pdf [DIR/Y-vs-X.png for one DIR, "
                                  "else ./Y-vs-X.png]")
    ap.add_argument("--title", help="title [Y vs X]")
    ap.add_argument("--band", default="minmax", choices=["minmax", "std"],
                    help="spread over seeds: min-max or mean +- sample std [minmax]")
    ap.add_argument("--logx", action="store_true",
                    help="log scale on x (points at x <= 0, e.g. bytes before the first round, "
                         "are left out)")
    ap.add_argument("--logy", action="store_true", help="log scale on y (points at y <= 0 left out)")
    ap.add_argument("--xlim", metavar="LO,HI", help="the x range shown")
    ap.add_argument("--ylim", metavar="LO,HI", help="the y range shown, e.g. 0.7,0.9 for accuracies")
    a = ap.parse_args()
    xlim = parse_limits("--xlim", a.xlim, a.logx)
    ylim = parse_limits("--ylim", a.ylim, a.logy)

    out = a.out or os.path.join(a.dirs[0] if len(a.dirs) == 1 else ".", "%s-vs-%s.png" % (a.y, a.x))
    if os.path.splitext(out)[1].lower() not in (".png", ".svg", ".pdf"):
        fail("--out %s: the name must end in .png, .svg or .pdf" % out, 2)

    lines = [line for d in a.dirs for line in discover(d)]
    configs = [flat_config(runs[0])[0] for _, runs in lines]
    keys = sorted({k for c in configs for k in c})
    differ = [k for k in keys if len({json.dumps(c.get(k), sort_keys=True) for c in configs}) > 1]
    data = [[curve(r, a.x, a.y) for r in runs] for _, runs in lines]

    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
        import numpy as np
    except ImportError as e:
        fail("matplotlib is missing for %s (%s): install it with `apt-get install "
             "python3-matplotlib` (Debian/Ubuntu) or `pip install matplotlib`" % (sys.executable, e))
    matplotlib.rcParams["svg.fonttype"] = "none"  # text stays text in an SVG

    fig, ax = plt.subplots(figsize=(7, 4.5))
    banded = False
    for (name, runs), cfg, curves in zip(lines, configs, data):
        label = ", ".join("%s=%s" % (k, cfg.get(k)) for k in differ) or name
        curves = [c for c in curves if c[0]]
        if not curves:
            fail("%s: no '%s' values to plot in %s" % (name, a.y, ", ".join(runs)))
        if len(curves) == 1:
            ax.plot(curves[0][0], curves[0][1], label=label)
            continue
        if all(c[0] == curves[0][0] for c in curves):
            grid = np.array(curves[0][0])
            ys = np.array([c[1] for c in curves])
        else:
            lo = max(c[0][0] for c in curves)
            hi = min(c[0][-1] for c in curves)
            grid = np.array(sorted({x for c in curves for x in c[0] if lo <= x <= hi}))
            ys = np.array([np.interp(grid, c[0], c[1]) for c in curves])
        mean = ys.mean(axis=0)
        if a.band == "std":
            sd = ys.std(axis=0, ddof=1)
            low, high = mean - sd, mean + sd
        else:
            low, high = ys.min(axis=0), ys.max(axis=0)
        line, = ax.plot(grid, mean, label="%s (%d seeds)" % (label, len(curves)))
        ax.fill_between(grid, low, high, color=line.get_color(), alpha=0.2, linewidth=0)
        banded = True
    if a.logx:
        ax.set_xscale("log")
    if a.logy:
        ax.set_yscale("log")
    if xlim:
        ax.set_xlim(*xlim)
    if ylim:
        ax.set_ylim(*ylim)
    ax.set_xlabel(X_LABELS[a.x])
    ax.set_ylabel(a.y)
    title = a.title or "%s vs %s" % (a.y, X_LABELS[a.x])
    if banded:
        title += "\nmean over seeds; band: %s" % ("min-max" if a.band == "minmax" else "+- sample std")
    ax.set_title(title, fontsize=10)
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    try:
        fig.savefig(out, dpi=120)
    except OSError as e:
        fail("cannot write %s: %s" % (out, e))
    print("chorus plot: wrote %s (%d line(s)%s)" % (out, len(lines),
          "; band over seeds: " + a.band if banded else ""))


if __name__ == "__main__":
    main()
