#!/usr/bin/python3
"""Issue 12's attack x aggregator tables (README, "Issue 12: Byzantine workers").

Each cell is one `chorus train` run: Fashion-MNIST, mlp:64, 10 workers,
sync_sgd, 3 epochs, lr 0.1, seed 1, workers 0..F-1 Byzantine with the row's
attack, the column's aggregator with --f F (trimmed:B with B = F; the `mean`
column has no --aggregator; the `none` row has no --byzantine).

    /usr/bin/python3 experiments/byzantine_tables.py --f 1,3 --partitions iid,dirichlet:0.5

runs the missing cells one at a time (partition-major: every F of the first
partition, then the next), each into ROOT/f<F>/<partition>/<attack>/<column>/
(`chorus train --out`), and prints one markdown table per (F, partition):
test accuracy in %, in parentheses the attackers' mean `byz_share_w<i>`, and
`fail` where the run stopped on a non-finite model. The same command again
skips every finished cell (its summary.json, or for a run that stopped
non-finite the failed.json this script writes beside it), so an interrupted
grid resumes. `--print` only prints the tables from what is there (a missing
cell shows `-`). `--attacks` / `--columns` restrict the grid (e.g. to check a
few cells against the README). Exit status 1 if a run failed other than by a
non-finite model (its output is in output.txt in its folder), 2 on bad usage.
"""

import argparse
import json
import os
import subprocess
import sys

ATTACKS = ["none", "signflip", "scale:-10", "gaussian:10", "zero", "nan",
           "labelflip", "alie", "ipm", "ipm:10", "mimic"]

# Columns as in the README tables: (label, aggregator, pre); None: the plain mean.
COLUMN_RULES = [("mean", None, None), ("median", "median", None),
                ("trimmed", "trimmed:{f}", None), ("krum", "krum", None),
                ("geomed", "geomed", None), ("cc:1", "cc:1", None),
                ("filter", "filter", None), ("krum+nnm", "krum", "nnm"),
                ("cc:1+nnm", "cc:1", "nnm")]

BASE = ["train", "--workers", "10", "--model", "mlp:64", "--epochs", "3",
        "--lr", "0.1", "--seed", "1", "--quiet"]
WORKERS = 10


def columns(f):
    """(label, aggregator or None, pre or None) for F = f, labels as in the tables."""
    out = []
    for label, agg, pre in COLUMN_RULES:
        agg = agg.format(f=f) if agg else None
        out.append((agg if label == "trimmed" else label, agg, pre))
    return out


def cell_args(f, partition, attack, agg, pre):
    args = BASE + ["--partition", partition]
    if attack != "none":
        args += ["--byzantine", ",".join(str(r) for r in range(f)) + ":" + attack]
    if agg:
        args += ["--aggregator", agg, "--f", str(f)]
    if pre:
        args += ["--pre", pre]
    return args


def cell_dir(root, f, partition, attack, label):
    return os.path.join(root, "f%d" % f, partition, attack, label)


def read_json(path):
    try:
        with open(path) as fh:
            return json.load(fh)
    except FileNotFoundError:
        return None


def outcome(folder):
    """('ok', summary) | ('fail', None) | (None, None) when the cell has not run."""
    summary = read_json(os.path.join(folder, "summary.json"))
    if summary is not None:
        if summary.get("stop_reason") == "non_finite":
            return "fail", None
        return "ok", summary
    if read_json(os.path.join(folder, "failed.json")) is not None:
        return "fail", None
    return None, None


def run_cell(chorus, folder, args, timeout):
    """Runs one cell; returns False when it failed other than by a non-finite model."""
    os.makedirs(folder, exist_ok=True)
    cmd = ["nice", "-n", "10", chorus] + args + ["--out", folder]
    try:
        proc = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                              timeout=timeout, universal_newlines=True)
        text, rc = proc.stdout, proc.returncode
    except subprocess.TimeoutExpired:
        text, rc = "", "timeout after %d s" % timeout
    with open(os.path.join(folder, "output.txt"), "w") as fh:
        fh.write(" ".join(cmd) + "\n" + text)
    if os.path.exists(os.path.join(folder, "summary.json")):
        return True
    if rc != 0 and "non_finite" in text:
        with open(os.path.join(folder, "failed.json"), "w") as fh:
            json.dump({"stop_reason": "non_finite", "rc": rc, "cmd": cmd}, fh)
        return True
    print("cell %s failed (%s), log: %s" % (folder, rc, os.path.join(folder, "output.txt")),
          file=sys.stderr)
    return False


def cell_text(folder, f):
    state, summary = outcome(folder)
    if state is None:
        return "-"
    if state == "fail":
        return "fail"
    text = "%.1f" % (100.0 * summary["test_acc"])
    shares = [summary["byz_share_w%d" % r] for r in range(f) if "byz_share_w%d" % r in summary]
    if shares:
        text += " (%.2f)" % (sum(shares) / len(shares))
    return text


def table(root, f, partition, attacks, cols):
    lines = ["| attack \\ aggregator | " + " | ".join(c[0] for c in cols) + " |",
             "|" + "---|" * (len(cols) + 1)]
    for attack in attacks:
        cells = [cell_text(cell_dir(root, f, partition, attack, c[0]), f) for c in cols]
        lines.append("| " + attack + " | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def parse_list(text, what):
    items = [x for x in text.split(",") if x]
    if not items:
        raise SystemExit("byzantine_tables: --%s is empty" % what)
    return items


def main():
    here = os.path.dirname(os.path.abspath(__file__))
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--f", default="2", help="Byzantine counts F, comma-separated [2]")
    parser.add_argument("--partitions", default="iid,dirichlet:0.5",
                        help="partitions, comma-separated [iid,dirichlet:0.5]")
    parser.add_argument("--root", default="runs/byzantine", help="runs folder [runs/byzantine]")
    parser.add_argument("--chorus", default=os.path.join(here, "..", "build", "chorus"),
                        help="chorus binary [build/chorus beside experiments/]")
    parser.add_argument("--attacks", help="only these rows (comma-separated)")
    parser.add_argument("--columns", help="only these columns (labels as in the table; "
                        "'trimmed' for trimmed:F)")
    parser.add_argument("--timeout", type=int, default=900, help="seconds per run [900]")
    parser.add_argument("--print", dest="print_only", action="store_true",
                        help="run nothing, print the tables from ROOT")
    opts = parser.parse_args()

    try:
        fs = [int(x) for x in parse_list(opts.f, "f")]
    except ValueError:
        parser.error("--f takes integers, e.g. --f 1,3")
    for f in fs:
        if not 0 < f < WORKERS // 2:
            parser.error("--f %d: need 0 < F < %d (ranks 0..F-1 of %d workers)" % (f, WORKERS // 2, WORKERS))
    partitions = parse_list(opts.partitions, "partitions")
    attacks = ATTACKS
    if opts.attacks:
        attacks = parse_list(opts.attacks, "attacks")
        unknown = [a for a in attacks if a not in ATTACKS]
        if unknown:
            parser.error("unknown attack(s) %s; the tables' rows: %s" % (unknown, ", ".join(ATTACKS)))
    wanted = None
    if opts.columns:
        wanted = parse_list(opts.columns, "columns")
        known = [c[0] for c in COLUMN_RULES]
        unknown = [c for c in wanted if c not in known]
        if unknown:
            parser.error("unknown column(s) %s; the tables' columns: %s" % (unknown, ", ".join(known)))

    def cols_for(f):
        return [c for c, (key, _, _) in zip(columns(f), COLUMN_RULES) if wanted is None or key in wanted]

    if not opts.print_only and not os.access(opts.chorus, os.X_OK):
        parser.error("no chorus binary at %s (build it: cmake --build build --target chorus_cli, "
                     "or pass --chorus)" % opts.chorus)

    errors = 0
    if not opts.print_only:
        for partition in partitions:
            for f in fs:
                for attack in attacks:
                    for label, agg, pre in cols_for(f):
                        folder = cell_dir(opts.root, f, partition, attack, label)
                        if outcome(folder)[0] is not None:
                            continue
                        print("run f=%d %s %s %s" % (f, partition, attack, label), file=sys.stderr, flush=True)
                        if not run_cell(opts.chorus, folder, cell_args(f, partition, attack, agg, pre),
                                        opts.timeout):
                            errors += 1

    for partition in partitions:
        for f in fs:
            print("f = %d, --partition %s:\n" % (f, partition))
            print(table(opts.root, f, partition, attacks, cols_for(f)))
            print()
    if errors:
        print("%d run(s) failed (see output.txt in their folders)" % errors, file=sys.stderr)
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main())
