#!/usr/bin/env python3
"""Distance to the L1 optimum and support of the final models of chorus
sweeps (model.npy), against a reference sweep with the same seeds.

usage: l1_optimum.py [--figure OUT.png --title T --only TEXT] REFERENCE_SWEEP SWEEP [SWEEP...]

REFERENCE_SWEEP holds one point whose seed-S/model.npy is the optimum w* for
the data of seed S (the synthetic problem is drawn from the seed). For every
point of every other sweep and every seed it finished, with w its model.npy:
  dist     ||w - w*|| / ||w*||
  nnz      the nonzeros of w (a proximal step zeroes coordinates exactly)
  extra    nonzeros of w outside the support of w*
  missing  the support of w* that w zeroes
  off max  the largest |w_j| outside the support of w*
Prints a markdown table of mean ± sample std (n-1) over the seeds. With
--figure: the magnitudes |w_j| of each point's final model, sorted, on a log
scale, against w*'s (seed of the first finished run; a model with extra
nonzeros has a longer tail); --only keeps the points whose folder name
contains TEXT. chorus plot draws metrics over time, not the
coordinates of a model, hence this figure here.
"""
import json
import os
import statistics
import sys

import numpy as np


def fail(msg):
    print("l1_optimum.py: " + msg, file=sys.stderr)
    sys.exit(2)


def points(sweep):
    try:
        with open(os.path.join(sweep, "summary.json")) as f:
            doc = json.load(f)
    except (OSError, ValueError) as e:
        fail("cannot read %s/summary.json: %s (run the sweep first)" % (sweep, e))
    return doc


def fmt(xs, f):
    if not xs:
        return "–"
    text = f % statistics.mean(xs)
    return text + (" ± " + f % statistics.stdev(xs) if len(xs) > 1 else "")


def figure(out, title, ref_point, series):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, ax = plt.subplots(figsize=(7, 4.2))
    seed = series[0][2]
    w_star = np.load(os.path.join(ref_point, "seed-%d" % seed, "model.npy")).ravel()
    mags = np.sort(np.abs(w_star[w_star != 0]))[::-1]
    ax.plot(np.arange(1, len(mags) + 1), mags, "ko", ms=7, mfc="none", label="w* (%d nonzeros)" % len(mags))
    for label, path, _ in series:
        w = np.load(path).ravel()
        m = np.sort(np.abs(w[w != 0]))[::-1]
        ax.plot(np.arange(1, len(m) + 1), m, ".-", lw=1, label="%s (%d nonzeros)" % (label, len(m)))
    ax.set_yscale("log")
    ax.set_xlabel("coordinate, by decreasing |w_j| (nonzeros only)")
    ax.set_ylabel("|w_j|")
    ax.set_title("%s\nfinal models, seed %d" % (title, seed), fontsize=10)
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(out, dpi=110)
    print("l1_optimum.py: wrote %s" % out, file=sys.stderr)


def main(argv):
    fig_out, title, only = None, "L1 problem", ""
    while len(argv) > 2 and argv[1] in ("--figure", "--title", "--only"):
        if argv[1] == "--figure":
            fig_out = argv[2]
        elif argv[1] == "--only":
            only = argv[2]
        else:
            title = argv[2]
        argv = argv[:1] + argv[3:]
    if len(argv) < 3:
        print(__doc__)
        return 2
    series = []
    ref_doc = points(argv[1])
    if len(ref_doc["points"]) != 1:
        fail("%s: the reference sweep must have one point" % argv[1])
    ref_point = os.path.join(argv[1], ref_doc["points"][0]["point"])
    docs = [(s, points(s)) for s in argv[2:]]
    keys = ["sweep"] if len(docs) > 1 else []
    for _, d in docs:
        keys += [k for k in d.get("grid", {}) if k not in keys]
    header = keys + ["dist to w* (rel.)", "nonzeros", "extra nonzeros", "missing", "off max", "seeds"]
    print("| " + " | ".join(header) + " |")
    print("|" + "---|" * len(header))
    seeds_seen = set()
    for sweep, doc in docs:
        for p in doc["points"]:
            dist, nnz, extra, missing, off = [], [], [], [], []
            for seed in p.get("seeds_finished", []):
                ref = os.path.join(ref_point, "seed-%d" % seed, "model.npy")
                got = os.path.join(sweep, p["point"], "seed-%d" % seed, "model.npy")
                if not os.path.isfile(ref):
                    fail("no reference model %s" % ref)
                w_star, w = np.load(ref).ravel(), np.load(got).ravel()
                if w.shape != w_star.shape:
                    fail("%s and %s differ in size" % (got, ref))
                s_star, s = w_star != 0, w != 0
                dist.append(float(np.linalg.norm(w - w_star) / np.linalg.norm(w_star)))
                nnz.append(int(s.sum()))
                extra.append(int((s & ~s_star).sum()))
                missing.append(int((s_star & ~s).sum()))
                off.append(float(np.abs(w[~s_star]).max()) if (~s_star).any() else 0.0)
                seeds_seen.add(seed)
                if only in p["point"] and (not series or series[0][2] == seed):
                    series.append((", ".join("%s=%s" % kv for kv in p["params"].items()), got, seed))
            params = dict(p["params"], sweep=doc.get("sweep", ""))
            row = [str(params.get(k, "–")) for k in keys]
            row += [fmt(dist, "%.2e"), fmt(nnz, "%.1f"), fmt(extra, "%.1f"), fmt(missing, "%.1f"),
                    fmt(off, "%.1e"), str(len(dist))]
            print("| " + " | ".join(row) + " |")
    if fig_out and series:
        figure(fig_out, title, ref_point, series)
    ref_nnz = [int((np.load(os.path.join(ref_point, "seed-%d" % s, "model.npy")) != 0).sum())
               for s in sorted(seeds_seen)]
    print("\nmean ± sample std (n-1) over seeds %s; w* (%s) has %s nonzeros"
          % (",".join(map(str, sorted(seeds_seen))), ref_doc["sweep"],
             "/".join(map(str, ref_nnz))))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
