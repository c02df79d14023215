#!/usr/bin/env python3
"""The figure of issue11_compression.sh: test accuracy against MB sent (log
scale) and against wall time, one line per grid point of the given sweeps
(mean over its seeds, evaluation by evaluation: every seed evaluates at the
same steps), labelled by protocol, compressors and error feedback.

usage: issue11_figure.py OUT.png SWEEP_DIR...
"""
import glob
import json
import os
import statistics
import sys


def rows_of(path):
    rows = []
    with open(path) as f:
        for line in f:
            try:
                rows.append(json.loads(line))
            except ValueError:
                break
    return [r for r in rows if isinstance(r.get("test_acc"), (int, float))]


def label_of(point):
    """From the point's folder name, KEY=VALUE pairs joined by ',' (':' in a
    compressor written as '_'; the protocol options are not in config.json)."""
    c = dict(kv.split("=", 1) for kv in os.path.basename(os.path.normpath(point)).split(","))
    c = {k: v.replace("_", ":") if k.startswith("compress") else v for k, v in c.items()}
    algo = c.get("algorithm", "?")
    text = {"sync_sgd": "sync", "local_sgd": "local tau %s" % c.get("tau")}.get(algo, algo)
    text += " " + c.get("compress", "none")
    if c.get("compress-down", "none") != "none":
        text += " / " + c["compress-down"]
    ef = c.get("error-feedback", "none")
    return text + (" + " + ef if ef != "none" else "")


def main(argv):
    if len(argv) < 3:
        print(__doc__, file=sys.stderr)
        return 2
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, (ax_b, ax_t) = plt.subplots(1, 2, figsize=(10, 4.2), dpi=80, sharey=True)
    count = 0
    for sweep in argv[2:]:
        for point in sorted(glob.glob(os.path.join(sweep, "*", ""))):
            seeds = sorted(glob.glob(os.path.join(point, "seed-*", "metrics.jsonl")))
            if not seeds:
                continue
            label = label_of(point)
            runs = [rows_of(p) for p in seeds]
            n = min(len(r) for r in runs)
            mean = lambda key: [statistics.mean(r[i][key] for r in runs) for i in range(1, n)]
            # Colours cycle through 10; local SGD dashed, the rest solid.
            style = dict(color="C%d" % (count % 10), linestyle="--" if label.startswith("local") else "-")
            count += 1
            ax_b.plot([b / 1e6 for b in mean("bytes_sent")], mean("test_acc"), **style)
            ax_t.plot(mean("wall_s"), mean("test_acc"), label=label, **style)
    ax_b.set_xscale("log")
    ax_b.set_xlabel("MB sent (log)")
    ax_t.set_xlabel("wall s (evaluations included; machine shared)")
    ax_b.set_ylabel("test accuracy")
    ax_b.set_ylim(0.7, 0.86)
    for ax in (ax_b, ax_t):
        ax.grid(alpha=0.3)
    ax_t.legend(fontsize=7, loc="lower right")
    fig.suptitle("Fashion-MNIST mlp:256, 8 workers, 1 Gbit/s link (mean over seeds)", fontsize=10)
    fig.tight_layout()
    fig.savefig(argv[1])
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
