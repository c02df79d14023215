#!/usr/bin/python3
"""Cross-process cost of Chorus's runs: `chorus train --processes P` against
the same run in one process, and against PyTorch DDP (gloo).

Runs the built `chorus` binary (BUILD/chorus) and reads the summary, the last
line of its stdout. Every configuration runs REPS times, interleaved (one of
each, then the next repetition), and the lines report the median.

  rounds  sync_sgd, batch 8 (little compute, so the round is mostly the
          payload's trip): seconds per round (train_s / steps) for 2 workers
          in one process, over --processes 2, 4 workers in one process and over
          --processes 4, for a ~50 KB model (mlp:16, 12.7k floats: the round
          trips' latency), a ~1 MB one (mlp:334, 265k floats) and a ~16 MB one
          (mlp:5000, 3.98M floats); `ratio_to_in_process` is the round time
          over the in-process round with as many workers and the same scheduler.
          Each over-processes run is made for sync_sgd and for allreduce_sgd
          (the same steps, gradients node to node), and once per data plane
          in --data-planes (`chorus train --data-plane`, passed to the nodes)
          [caf,ucx].
  ddp     MLP 784-256-10, batch 64, one epoch: `chorus train --processes 2
          --workers 2` samples/s against `bench/pytorch_mlp.py --modes ddp`
          (2 gloo processes), for sync_sgd (the coordinator's round server
          sends w to each node and takes each gradient back) and
          allreduce_sgd (the same steps; the two nodes' peers exchange their
          gradients directly, DDP's pattern), with the in-process 2-worker
          sync_sgd run for reference.

Every chorus run of the rounds part, and the --processes 2 runs of the ddp
part, is made once per CAF scheduler policy in --schedulers (`chorus train
--scheduler`, which --processes passes to the nodes; its default, auto, is
sharing across processes) [stealing,sharing].

    /usr/bin/python3 bench/cluster_round.py [--build build] [--reps 3]
        [--parts rounds,ddp] [--schedulers stealing,sharing]
        [--data-planes caf,ucx] [--models mlp:5000,...] [--quick]

One JSON line per configuration on stdout ({"bench":"cluster_round",...}),
progress on stderr. A run that fails gives a line with "error" and exit 1 at
the end. No torch gives an error line for the ddp part and no failure, as
bench/pytorch_mlp.py does (install it with `bash tools/install-deps.sh
bench`). CHORUS_BENCH_QUICK=1 is --quick.
"""
import argparse
import json
import os
import statistics
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
DATA = os.environ.get("CHORUS_FASHION_MNIST", "/usr/share/datasets/fashion-mnist")
# Longest time one run may take before it counts as failed.
RUN_TIMEOUT_S = 600


def note(text):
    print("[cluster_round] " + text, file=sys.stderr, flush=True)


def emit(obj):
    print(json.dumps(obj, separators=(",", ":")), flush=True)


def run_chorus(chorus, args):
    """The summary (a dict) of `chorus train ARGS`, or raises RuntimeError."""
    cmd = [chorus, "train", "--quiet", "--data-dir", DATA] + args
    try:
        p = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                           timeout=RUN_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        raise RuntimeError(f"timed out after {RUN_TIMEOUT_S} s: {' '.join(cmd)}")
    lines = [l for l in p.stdout.splitlines() if l.strip()]
    if p.returncode != 0 or not lines:
        tail = (p.stderr.strip().splitlines() or ["(no stderr)"])[-1]
        raise RuntimeError(f"exit {p.returncode}: {' '.join(cmd)}: {tail}")
    return json.loads(lines[-1])


def run_ddp(python, quick):
    cmd = [python, os.path.join(HERE, "pytorch_mlp.py"), "--modes", "ddp", "--processes", "2"]
    if quick:
        cmd.append("--quick")
    p = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                       timeout=RUN_TIMEOUT_S)
    lines = [l for l in p.stdout.splitlines() if l.strip()]
    if p.returncode != 0 or not lines:
        raise RuntimeError(f"exit {p.returncode}: {' '.join(cmd)}")
    out = json.loads(lines[-1])
    if "error" in out:
        raise RuntimeError(out["error"])
    return out


def median(xs):
    return statistics.median(xs) if xs else None


def interleaved(configs, reps, measure):
    """measure(config) -> float for every config, REPS times, one of each per
    repetition; returns {name: [values]} and {name: error text}."""
    values = {c["name"]: [] for c in configs}
    errors = {}
    for rep in range(reps):
        for c in configs:
            if c["name"] in errors:
                continue
            note(f"rep {rep + 1}/{reps}: {c['name']}")
            try:
                values[c["name"]].append(measure(c))
            except (RuntimeError, ValueError, KeyError, OSError) as e:
                errors[c["name"]] = str(e)
    return values, errors


def rounds_part(chorus, reps, quick, schedulers, planes, only_models):
    # spec, ~MB, steps: a latency-bound one (mlp:16, 12.7k floats), ~1 MB, ~16 MB
    models = [("mlp:16", 0.05, 1000), ("mlp:334", 1, 200), ("mlp:5000", 16, 30)]
    if only_models:
        models = [m for m in models if m[0] in only_models]
    status = 0
    for spec, mb, steps in models:
        if quick:
            steps = 5
        configs = []
        runs = [("sync_sgd", w, p) for w, p in ((2, 0), (2, 2), (4, 0), (4, 4))]
        # The same steps with the gradients going node to node (no round server).
        runs += [("allreduce_sgd", 2, 2), ("allreduce_sgd", 4, 4)]
        for sched in schedulers:
            for algorithm, workers, procs in runs:
                for plane in (planes if procs else ["-"]):
                    args = ["--algorithm", algorithm, "--model", spec, "--batch", "8",
                            "--workers", str(workers), "--threads", "2", "--steps", str(steps),
                            "--eval-every", str(steps * 10), "--timeout", "120s"]
                    if procs:
                        args += ["--processes", str(procs), "--data-plane", plane]
                    args += ["--scheduler", sched]
                    configs.append({"name": f"{spec} {algorithm} w{workers} p{procs} {sched} {plane}",
                                    "args": args, "algorithm": algorithm, "workers": workers,
                                    "processes": procs, "scheduler": sched, "data_plane": plane})

        def measure(c):
            s = run_chorus(chorus, c["args"])
            c["num_params"] = s.get("num_params", c.get("num_params"))
            return s["train_s"] / s["steps"]

        values, errors = interleaved(configs, reps, measure)
        for c in configs:
            line = {"bench": "cluster_round", "part": "rounds", "algorithm": c["algorithm"],
                    "model": spec, "model_mb": mb, "batch": 8, "steps": steps,
                    "workers": c["workers"], "processes": c["processes"],
                    "scheduler": c["scheduler"], "data_plane": c["data_plane"], "reps": reps}
            if c["name"] in errors:
                line["error"] = errors[c["name"]]
                status = 1
            else:
                # Against sync_sgd in one process with as many workers.
                base = f"{spec} sync_sgd w{c['workers']} p0 {c['scheduler']} -"
                t = median(values[c["name"]])
                line["round_ms"] = round(t * 1e3, 3)
                line["round_ms_all"] = [round(v * 1e3, 3) for v in values[c["name"]]]
                if values.get(base):
                    line["ratio_to_in_process"] = round(t / median(values[base]), 3)
            emit(line)
    return status


def ddp_part(chorus, reps, quick, python, schedulers):
    common = ["--model", "mlp:256", "--batch", "64", "--workers",
              "2", "--threads", "2", "--lr", "0.1", "--epochs", "0.1" if quick else "1",
              "--eval-every", "1000000"]
    sync = ["--algorithm", "sync_sgd"] + common
    # allreduce_sgd: the same steps as sync_sgd, with DDP's message pattern
    # (the gradients go node to node, not through the coordinator).
    peers = ["--algorithm", "allreduce_sgd"] + common
    configs = [{"name": f"chorus p2 {s}", "kind": "chorus", "scheduler": s, "algorithm": "sync_sgd",
                "args": sync + ["--processes", "2", "--scheduler", s]} for s in schedulers]
    configs += [{"name": f"chorus p2 allreduce_sgd {s}", "kind": "chorus", "scheduler": s,
                 "algorithm": "allreduce_sgd", "args": peers + ["--processes", "2", "--scheduler", s]}
                for s in schedulers]
    configs += [
        {"name": "pytorch ddp", "kind": "ddp"},
        {"name": "chorus p0 stealing", "kind": "chorus", "scheduler": "stealing",
         "algorithm": "sync_sgd", "args": sync + ["--scheduler", "stealing"]},
    ]

    def measure(c):
        if c["kind"] == "ddp":
            return run_ddp(python, quick)["samples_per_s"]
        return run_chorus(chorus, c["args"])["samples_per_s"]

    values, errors = interleaved(configs, reps, measure)
    ddp = median(values["pytorch ddp"])
    status = 0
    for c in configs:
        line = {"bench": "cluster_round", "part": "ddp", "run": c["name"], "model": "mlp:256",
                "batch": 64, "workers": 2, "reps": reps}
        if c["kind"] == "chorus":
            line["processes"] = 2 if "--processes" in c["args"] else 0
            line["scheduler"] = c["scheduler"]
            line["algorithm"] = c["algorithm"]
        if c["name"] in errors:
            line["error"] = errors[c["name"]]
            status = 1
        else:
            v = median(values[c["name"]])
            line["samples_per_s"] = round(v, 1)
            line["samples_per_s_all"] = [round(x, 1) for x in values[c["name"]]]
            if ddp and c["kind"] == "chorus":
                line["ratio_to_ddp"] = round(v / ddp, 3)
        emit(line)
    return status


def torch_missing(python):
    p = subprocess.run([python, "-c", "import torch, numpy"], stdout=subprocess.DEVNULL,
                       stderr=subprocess.PIPE, text=True)
    return None if p.returncode == 0 else (p.stderr.strip().splitlines() or ["?"])[-1]


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--build", default="build", help="build folder with the chorus binary")
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--parts", default="rounds,ddp")
    ap.add_argument("--schedulers", default="stealing,sharing",
                    help="comma list of stealing | sharing (chorus train --scheduler)")
    ap.add_argument("--data-planes", default="caf,ucx",
                    help="comma list of caf | ucx (chorus train --data-plane) for the "
                         "--processes runs of the rounds part")
    ap.add_argument("--models", default="",
                    help="rounds part: only these model specs (comma list, e.g. mlp:5000)")
    ap.add_argument("--python", default=os.environ.get("PYTHON", "/usr/bin/python3"),
                    help="interpreter with torch for bench/pytorch_mlp.py")
    ap.add_argument("--quick", action="store_true", help="a few steps per run (smoke run)")
    args = ap.parse_args()
    if os.environ.get("CHORUS_BENCH_QUICK", "0") not in ("", "0"):
        args.quick = True
    if args.reps < 1:
        ap.error("--reps must be >= 1")
    if args.quick:
        args.reps = 1
    chorus = os.path.join(args.build, "chorus")
    if not os.access(chorus, os.X_OK):
        emit({"bench": "cluster_round", "error": f"no {chorus}; build the chorus target first"})
        return 1
    parts = [p for p in args.parts.split(",") if p]
    schedulers = [s for s in args.schedulers.split(",") if s]
    status = 0
    bad = [s for s in schedulers if s not in ("stealing", "sharing")]
    if bad or not schedulers:
        ap.error(f"--schedulers: {bad} (valid: stealing, sharing)")
    for part in parts:
        if part == "rounds":
            planes = [p for p in args.data_planes.split(",") if p]
            if not planes or any(p not in ("caf", "ucx") for p in planes):
                ap.error(f"--data-planes: {planes} (valid: caf, ucx)")
            status |= rounds_part(chorus, args.reps, args.quick, schedulers, planes,
                                  [m for m in args.models.split(",") if m])
        elif part == "ddp":
            missing = torch_missing(args.python)
            if missing:
                note(f"ddp part skipped: {missing} (bash tools/install-deps.sh bench)")
                emit({"bench": "cluster_round", "part": "ddp",
                      "error": f"{args.python}: {missing}"})
                continue
            status |= ddp_part(chorus, args.reps, args.quick, args.python, schedulers)
        else:
            emit({"bench": "cluster_round", "part": part,
                  "error": "unknown part (valid: rounds, ddp)"})
            status = 1
    return status


if __name__ == "__main__":
    sys.exit(main())
