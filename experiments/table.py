#!/usr/bin/env python3
"""Markdown table of a chorus sweep's summary.json: one row per grid point,
each cell the mean ± sample standard deviation (n-1) over the seeds that
finished (written by `chorus sweep`; see its --help).

usage: table.py SUMMARY.json [SUMMARY.json...] [--col LABEL=METRIC[/SCALE][:FORMAT]]...

Several summaries give one table (rows in order; the key columns are the union
of their grids, plus `sweep` when more than one is given).

METRIC is a key of the runs' summary.json (test_acc, bytes_sent, ...) or
ttt_wall_s / ttt_step: the time to a test accuracy, from the sweep's own
--target-acc, or with `--target A` (given before the columns) read here from
each run's metrics.jsonl (the first evaluation with test_acc >= A), so a run
need not stop there; the cell then says how many seeds reached it.
avg:KEY is the mean of KEY over the rows of each run's metrics.jsonl (e.g.
avg:grad_diversity, a per-round metric), then mean ± std over the seeds. SCALE divides (bytes_sent/1e6 is MB). FORMAT is printf-style
(default %.4g). Without --col: test_acc. The first columns are the grid's keys.
"""
import json
import os
import statistics
import sys


def fail(msg):
    print("table.py: " + msg, file=sys.stderr)
    sys.exit(2)


def parse_col(spec):
    label, _, rest = spec.partition("=")
    if not rest:
        label, rest = spec, spec
    prefix = "avg:" if rest.startswith("avg:") else ""
    expr, _, fmt = rest[len(prefix):].partition(":")
    metric, _, scale = expr.partition("/")
    return label, prefix + metric, float(scale) if scale else 1.0, fmt or "%.4g"


def cell(stats, scale, fmt, n_seeds=None):
    """'mean ± std' of a {mean, std, min, max, n} block; '–' without values."""
    if not stats or not stats.get("n"):
        return "–"
    mean = stats["mean"] / scale
    text = fmt % mean
    if stats.get("std") is not None:
        text += " ± " + fmt % (stats["std"] / scale)
    if n_seeds is not None and stats["n"] < n_seeds:
        text += " (%d of %d seeds)" % (stats["n"], n_seeds)
    return text


def stats_of(xs):
    """The summary's {mean, std, min, max, n} block for a list of values."""
    if not xs:
        return {"n": 0}
    return {"mean": statistics.mean(xs), "std": statistics.stdev(xs) if len(xs) > 1 else None,
            "min": min(xs), "max": max(xs), "n": len(xs)}


def time_to_target(summary_path, point, seeds, target):
    """{wall_s, step, reached, of} over the finished seeds of a point."""
    walls, steps = [], []
    for seed in seeds:
        path = os.path.join(os.path.dirname(summary_path), point, "seed-%d" % seed, "metrics.jsonl")
        try:
            with open(path) as f:
                for line in f:
                    try:
                        row = json.loads(line)
                    except ValueError:
                        break
                    if isinstance(row.get("test_acc"), (int, float)) and row["test_acc"] >= target:
                        walls.append(row["wall_s"])
                        steps.append(row["step"])
                        break
        except OSError:
            pass
    return {"wall_s": stats_of(walls), "step": stats_of(steps), "reached": len(walls),
            "of": len(seeds)}


def run_average(summary_path, point, seeds, key):
    """{mean, std, ...} over seeds of each run's mean of `key` over its rows."""
    means = []
    for seed in seeds:
        path = os.path.join(os.path.dirname(summary_path), point, "seed-%d" % seed, "metrics.jsonl")
        vals = []
        try:
            with open(path) as f:
                for line in f:
                    try:
                        v = json.loads(line).get(key)
                    except ValueError:
                        break
                    if isinstance(v, (int, float)):
                        vals.append(float(v))
        except OSError:
            pass
        if vals:
            means.append(statistics.mean(vals))
    return stats_of(means)


def markdown(header, rows):
    out = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    out += ["| " + " | ".join(r) + " |" for r in rows]
    return "\n".join(out)


def main(argv):
    if len(argv) < 2 or argv[1] in ("-h", "--help"):
        print(__doc__)
        return 0 if len(argv) >= 2 else 2
    cols, docs, paths, target, i = [], [], [], None, 1
    while i < len(argv):
        if argv[i] == "--target" and i + 1 < len(argv):
            target = float(argv[i + 1])
            i += 2
        elif argv[i] == "--col" and i + 1 < len(argv):
            cols.append(parse_col(argv[i + 1]))
            i += 2
        elif argv[i].startswith("--"):
            fail("unknown argument %r (see --help)" % argv[i])
        else:
            try:
                with open(argv[i]) as f:
                    docs.append(json.load(f))
                paths.append(argv[i])
            except (OSError, ValueError) as e:
                fail("cannot read %s: %s (run the sweep first)" % (argv[i], e))
            i += 1
    if not docs:
        fail("no summary.json given")
    cols = cols or [parse_col("test acc=test_acc:%.4f")]
    keys = ["sweep"] if len(docs) > 1 else []
    for doc in docs:
        keys += [k for k in doc.get("grid", {}) if k not in keys]
    seeds = sorted({s for doc in docs for s in doc.get("seeds", [])})
    rows = []
    for path, doc, p in [(f, d, p) for f, d in zip(paths, docs) for p in d.get("points", [])]:
        n_seeds = len(doc.get("seeds", []))
        params = dict(p["params"], sweep=doc.get("sweep", ""))
        row = [str(params.get(k, "–")) for k in keys]
        done = len(p.get("seeds_finished", []))
        for label, metric, scale, fmt in cols:
            if metric.startswith("ttt_"):
                if target is not None:
                    t = time_to_target(path, p["point"], p.get("seeds_finished", []), target)
                else:
                    t = p.get("time_to_target") or {}
                c = cell(t.get(metric[4:]), scale, fmt)
                if t.get("of") and t.get("reached", 0) < t["of"]:
                    c += " (%d of %d reached)" % (t.get("reached", 0), t["of"])
                row.append(c)
            elif metric.startswith("avg:"):
                row.append(cell(run_average(path, p["point"], p.get("seeds_finished", []), metric[4:]),
                                scale, fmt, done or n_seeds))
            else:
                row.append(cell(p.get("metrics", {}).get(metric), scale, fmt, done or n_seeds))
        if done < n_seeds:
            row[0] += " (%d of %d seeds finished)" % (done, n_seeds)
        rows.append(row)
    print(markdown(keys + [c[0] for c in cols], rows))
    print("\nmean ± sample std (n-1) over seeds %s" % ",".join(str(s) for s in seeds))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
