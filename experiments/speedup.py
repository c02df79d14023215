#!/usr/bin/env python3
"""Speedup table and figure of issue11_speedup.sh: for each protocol and worker
count, the wall time (wall_s of metrics.jsonl, evaluations included) of the
first evaluation with test_acc >= TARGET (TARGET `end`: of the last
evaluation, i.e. the whole run), mean ± sample std over the seeds that
reached it, and the speedup T(baseline) / T(n), where the baseline is the
mean of the first protocol at the first worker count.

usage: speedup.py RUNS TARGET OUT.png|- PROTO=LABEL... --workers 1,2,4
  RUNS/i11s-PROTO-wN/*/seed-*/metrics.jsonl are read (one grid point each);
  OUT - writes no figure.
"""
import glob
import json
import os
import statistics
import sys


def first_hit(path, target):
    """wall_s of the first evaluation reaching target (None: the last one)."""
    last = None
    with open(path) as f:
        for line in f:
            try:
                row = json.loads(line)
            except ValueError:
                break
            acc = row.get("test_acc")
            if isinstance(acc, (int, float)):
                last = row["wall_s"]
                if target is not None and acc >= target:
                    return last
    return last if target is None else None


def times(runs, proto, n, target):
    """(hits, number of seeds) for one protocol at n workers."""
    files = sorted(glob.glob(os.path.join(runs, "i11s-%s-w%d" % (proto, n), "*", "seed-*", "metrics.jsonl")))
    hits = [t for t in (first_hit(p, target) for p in files) if t is not None]
    return hits, len(files)


def fmt(hits, seeds):
    if not hits:
        return "not reached" if seeds else "–"
    text = "%.2f" % statistics.mean(hits)
    if len(hits) > 1:
        text += " ± %.2f" % statistics.stdev(hits)
    if len(hits) < seeds:
        text += " (%d of %d seeds)" % (len(hits), seeds)
    return text


def main(argv):
    if len(argv) < 5 or "--workers" not in argv:
        print(__doc__, file=sys.stderr)
        return 2
    i = argv.index("--workers")
    workers = [int(w) for w in argv[i + 1].split(",")]
    runs, out = argv[1], argv[3]
    target = None if argv[2] == "end" else float(argv[2])
    what = "the run" if target is None else "test acc %g" % target
    protos = [p.split("=", 1) for p in argv[4:i]]
    if any(len(p) != 2 for p in protos):
        print("speedup.py: protocols are PROTO=LABEL", file=sys.stderr)
        return 2
    base_hits, _ = times(runs, protos[0][0], workers[0], target)
    if not base_hits:
        print("speedup.py: the baseline (%s, %d workers) never reached %s" % (protos[0][0], workers[0], what),
              file=sys.stderr)
        return 1
    base = statistics.mean(base_hits)
    print("| workers | " + " | ".join("%s: s to %s | speedup" % (label, "end" if target is None else "%g" % target) for _, label in protos) + " |")
    print("|---|" + "---|---|" * len(protos))
    curves = {label: ([], []) for _, label in protos}
    for n in workers:
        cells = []
        for proto, label in protos:
            hits, seeds = times(runs, proto, n, target)
            speed = base / statistics.mean(hits) if hits else None
            cells += [fmt(hits, seeds), "%.2f" % speed if speed else "–"]
            if speed:
                curves[label][0].append(n)
                curves[label][1].append(speed)
        print("| %d | %s |" % (n, " | ".join(cells)))
    if out == "-":
        return 0
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, ax = plt.subplots(figsize=(5.5, 3.8), dpi=90)
    for label, (xs, ys) in curves.items():
        ax.plot(xs, ys, marker="o", label=label)
    ax.plot(workers, [n / workers[0] for n in workers], "k:", label="linear")
    ax.set_xscale("log", base=2)
    ax.set_yscale("log", base=2)
    ax.set_xticks(workers)
    ax.set_xticklabels([str(n) for n in workers])
    ax.set_xlabel("workers")
    ax.set_ylabel("speedup (time to %s)" % what)
    ax.set_title("speedup over %s with %d worker(s)" % (protos[0][1], workers[0]), fontsize=10)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(out)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
