#!/usr/bin/python3
"""Chorus against its bounds and against PyTorch on this machine's CPUs, in
one sitting.

MLP 784-256-10 ("mlp:256"), batch 64 per worker, plain SGD lr 0.1, Fashion-
MNIST, N = every usable core (nproc) unless --workers says otherwise. Rows:

  gemm_1core        the GEMMs of one step on one core (BUILD/bench/
                    training_throughput, mode gemm_bound)
  gemm_all_cores    the same GEMMs on every usable core at once
                    (gemm_bound_all_cores)
  loss_grad         model::loss_grad in a loop, no actors (raw_loss_grad)
  chorus_1          `chorus train --algorithm sync_sgd --workers 1`, default
                    settings; samples_per_s of its summary (train_s: the run
                    without its evaluations and without loading the data)
  chorus_N          the same with N workers, default settings (--spin-polls
                    auto, --threads auto)
  chorus_N_spin100, chorus_N_spin100000   N workers, --spin-polls 100 / 100000
  torch_debian_1, torch_debian_ddp        bench/pytorch_mlp.py with Debian's
                    /usr/bin/python3 (python3-torch, OpenBLAS): 1 process 1
                    thread; DDP, N gloo processes
  torch_pip_1, torch_pip_ddp, torch_pip_threads   the same with the virtual
                    environment's python (pip's torch, MKL), and one process
                    with N intra-op threads at batch N x 64 (the strongest
                    peer of N synchronous workers at batch 64)

Each Chorus and PyTorch run trains --epochs passes over the training set
(default 2; PyTorch after 20 untimed warm-up steps), short but past the
start-up. Every repetition runs every row once, each repetition in a
rotated order (the rows start at a different place each time), so that a
machine getting busier or cooler shows in every row alike. Output on stdout: one JSON line
per measurement ({"bench":"compare_cpu","rep":...,"row":...}), then one per
row with the median over the repetitions and its ratios to the pip
all-cores PyTorch row and to the all-cores GEMM bound. The same table in
markdown goes to stderr (and to --markdown FILE). A row that fails gives
lines with "error"; the script then exits 1.

    /usr/bin/python3 bench/compare_cpu.py [--build build] [--reps 3]
        [--python-venv BUILD/venv-torch] [--quick] [--markdown FILE]

`make bench` creates the virtual environment (BUILD/venv-torch, pip install
torch numpy) and runs this through bench/run_all.sh. Rows whose interpreter
lacks torch (no venv, no python3-torch) give one line with "error" each and
are left out, without failing the script; the rest still run.
CHORUS_BENCH_QUICK=1 is --quick.
"""
import argparse
import json
import os
import statistics
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
DATA = os.environ.get("CHORUS_FASHION_MNIST", "/usr/share/datasets/fashion-mnist")
BATCH = 64
LR = 0.1
# Longest time one measurement may take before it counts as failed.
RUN_TIMEOUT_S = 600


def note(text):
    print("[compare_cpu] " + text, file=sys.stderr, flush=True)


def emit(obj):
    print(json.dumps(obj, separators=(",", ":")), flush=True)


def usable_cores():
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


def load_average():
    try:
        with open("/proc/loadavg") as f:
            return float(f.read().split()[0])
    except (OSError, ValueError, IndexError):
        return None


def run(cmd, env=None):
    """stdout and stderr of CMD; RuntimeError when it fails or times out."""
    try:
        p = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                           timeout=RUN_TIMEOUT_S, env=env)
    except subprocess.TimeoutExpired:
        raise RuntimeError(f"timed out after {RUN_TIMEOUT_S} s: {' '.join(cmd)}")
    except OSError as e:
        raise RuntimeError(f"{' '.join(cmd)}: {e}")
    if p.returncode != 0:
        tail = (p.stderr.strip().splitlines() or ["(no stderr)"])[-1]
        raise RuntimeError(f"exit {p.returncode}: {' '.join(cmd)}: {tail}")
    return p.stdout, p.stderr


def json_lines(text):
    out = []
    for line in text.splitlines():
        line = line.strip()
        if line.startswith("{"):
            out.append(json.loads(line))
    return out


# --- the three kinds of measurement; each returns (samples_per_s, details) ---

def measure_bound(cfg, row):
    """One mode of training_throughput (CHORUS_BENCH_ONLY=mode)."""
    env = dict(os.environ, CHORUS_BENCH_ONLY=row["mode"])
    if cfg.quick:
        env["CHORUS_BENCH_QUICK"] = "1"
    stdout, _ = run([cfg.training_throughput], env)
    lines = [l for l in json_lines(stdout) if l.get("mode") == row["mode"]]
    if not lines:
        raise RuntimeError(f"training_throughput printed no {row['mode']} line")
    line = lines[-1]
    value = line.get(row["field"])
    if not isinstance(value, (int, float)):
        raise RuntimeError(f"training_throughput {row['mode']}: no {row['field']}")
    details = {k: line[k] for k in ("threads", "gemm_us_per_step", "gflops") if k in line}
    return float(value), details


def measure_chorus(cfg, row):
    """`chorus train` sync_sgd; samples_per_s from its summary line."""
    cmd = [cfg.chorus, "train", "--quiet", "--data-dir", DATA, "--algorithm", "sync_sgd",
           "--model", "mlp:256", "--batch", str(BATCH), "--lr", str(LR),
           "--workers", str(row["workers"]), "--epochs", str(cfg.chorus_epochs),
           "--eval-every", "1000000"] + row.get("extra", [])
    stdout, stderr = run(cmd)
    lines = json_lines(stdout)
    if not lines or "samples_per_s" not in lines[-1]:
        raise RuntimeError(f"no summary line from {' '.join(cmd)}")
    s = lines[-1]
    details = {k: s[k] for k in ("steps", "samples", "train_s", "eval_s", "test_acc") if k in s}
    # What --threads/--spin-polls auto chose ("[chorus] scheduling: ...").
    for line in stderr.splitlines():
        if "scheduling:" in line:
            details["scheduling"] = line.split("scheduling:", 1)[1].strip()
    return float(s["samples_per_s"]), details


def measure_torch(cfg, row):
    """bench/pytorch_mlp.py, one mode, with the row's interpreter."""
    python = cfg.python_debian if row["python"] == "debian" else cfg.python_venv_exe
    cmd = [python, os.path.join(HERE, "pytorch_mlp.py"), "--modes", row["mode"],
           "--epochs", str(cfg.torch_epochs), "--batch", str(BATCH),
           "--threads", str(cfg.workers), "--processes", str(cfg.workers)]
    if cfg.quick:
        cmd.append("--quick")
    stdout, _ = run(cmd)
    lines = json_lines(stdout)
    if not lines:
        raise RuntimeError(f"no JSON line from {' '.join(cmd)}")
    line = lines[-1]
    if "error" in line:
        raise RuntimeError(f"{python}: {line['error']}")
    details = {k: line[k] for k in ("torch", "blas", "blas_libs", "python", "processes",
                                    "threads", "batch", "seconds", "test_acc") if k in line}
    return float(line["samples_per_s"]), details


MEASURE = {"bound": measure_bound, "chorus": measure_chorus, "torch": measure_torch}


def make_rows(n):
    """The rows in table order: name, kind, what to run, label."""
    rows = [
        {"name": "gemm_1core", "kind": "bound", "mode": "gemm_bound",
         "field": "gemm_bound_samples_per_s",
         "label": "GEMM bound, 1 core, same binary (`training_throughput`)"},
        {"name": "gemm_all_cores", "kind": "bound", "mode": "gemm_bound_all_cores",
         "field": "gemm_bound_samples_per_s",
         "label": f"GEMM bound, all {usable_cores()} cores at once, same binary"},
        {"name": "loss_grad", "kind": "bound", "mode": "raw_loss_grad",
         "field": "samples_per_s", "label": "`loss_grad` loop, no actors"},
        {"name": "chorus_1", "kind": "chorus", "workers": 1,
         "label": "Chorus sync_sgd, 1 worker"},
        {"name": "chorus_1_thread1", "kind": "chorus", "workers": 1,
         "extra": ["--threads", "1"],
         "label": "Chorus sync_sgd, 1 worker, `--threads 1` (one core, against the 1-core bound)"},
    ]
    if n > 1:
        rows.append({"name": f"chorus_{n}", "kind": "chorus", "workers": n,
                     "label": f"Chorus sync_sgd, {n} workers (default settings)"})
        rows.append({"name": f"chorus_{n}_unsharded", "kind": "chorus", "workers": n,
                     "extra": ["--combine-shards", "1"],
                     "label": f"Chorus sync_sgd, {n} workers, `--combine-shards 1` (combine not split)"})
    for polls in (100, 100000):
        rows.append({"name": f"chorus_{n}_spin{polls}", "kind": "chorus", "workers": n,
                     "extra": ["--spin-polls", str(polls)],
                     "label": f"Chorus sync_sgd, {n} workers, `--spin-polls {polls}`"})
    for python in ("debian", "pip"):
        rows.append({"name": f"torch_{python}_1", "kind": "torch", "python": python,
                     "mode": "single", "label": "1 process, 1 thread"})
        rows.append({"name": f"torch_{python}_ddp", "kind": "torch", "python": python,
                     "mode": "ddp", "label": f"DDP, {n} gloo processes"})
    rows.append({"name": "torch_pip_threads", "kind": "torch", "python": "pip",
                 "mode": "threads",
                 "label": f"1 process, {n} intra-op threads, batch {n * BATCH}"})
    return rows


def rotated(rows, rep, reps):
    """The rows of repetition REP: the same cycle, started REP/REPS of the way
    round, so every row runs early in one repetition and late in another."""
    k = (rep * len(rows)) // reps % len(rows)
    return rows[k:] + rows[:k]


def torch_label(row, details):
    """ "PyTorch 2.x (pip, mkl), LABEL" from what the runs reported."""
    version = details.get("torch", "?")
    blas = details.get("blas", "?")
    if blas == "generic":  # Debian's build calls the system's libblas.so.3
        libs = [l for l in details.get("blas_libs", []) if "libblas" in l]
        blas = libs[0].split("/")[0] if libs else "system BLAS"
    return f"PyTorch {version} ({row['python']}, {blas}), {row['label']}"


def markdown(table, reps):
    """The table; a row with fewer good runs than REPS says how many."""
    def ratio(r):
        return f"{r:.2f}" if r is not None else "–"
    out = ["| | samples/s (median) | ratio to PyTorch pip all cores | ratio to all-cores GEMM bound |",
           "|---|---|---|---|"]
    for label, value, r_torch, r_gemm, runs in table:
        v = f"{value / 1e3:.1f}k" if value is not None else "failed"
        if value is not None and runs < reps:
            v += f" ({runs} of {reps} runs)"
        out.append(f"| {label} | {v} | {ratio(r_torch)} | {ratio(r_gemm)} |")
    return "\n".join(out) + "\n"


def torch_missing(python):
    """None if PYTHON imports torch and numpy, else why not."""
    try:
        p = subprocess.run([python, "-c", "import torch, numpy"], stdout=subprocess.DEVNULL,
                           stderr=subprocess.PIPE, text=True, timeout=RUN_TIMEOUT_S)
    except (OSError, subprocess.TimeoutExpired) as e:
        return f"{python}: {e}"
    if p.returncode != 0:
        return f"{python}: " + (p.stderr.strip().splitlines() or ["import failed"])[-1]
    return None


def main():
    ap = argparse.ArgumentParser(
        description=__doc__.split("\n")[0] + " " + __doc__.split("\n")[1],
        epilog="Rows and output: see the docstring at the top of bench/compare_cpu.py.")
    ap.add_argument("--build", default="build",
                    help="build folder with chorus and bench/training_throughput [%(default)s]")
    ap.add_argument("--reps", type=int, default=None,
                    help="repetitions of every row [3; 1 with --quick]")
    ap.add_argument("--workers", type=int, default=usable_cores(),
                    help="N: workers, DDP processes, intra-op threads [nproc: %(default)s]")
    ap.add_argument("--epochs", type=float, default=2,
                    help="timed passes over the training set per Chorus/PyTorch run "
                         "[%(default)s]")
    ap.add_argument("--python-venv", default=None,
                    help="virtual environment with pip's torch [BUILD/venv-torch]")
    ap.add_argument("--python-debian", default="/usr/bin/python3",
                    help="interpreter with Debian's python3-torch [%(default)s]")
    ap.add_argument("--rows", default=None,
                    help="comma list of row names to run (default: all; see the docstring)")
    ap.add_argument("--markdown", default=None, metavar="FILE",
                    help="also write the markdown table to FILE")
    ap.add_argument("--quick", action="store_true",
                    help="short runs (smoke test): training_throughput's quick mode, "
                         "0.1 epoch of Chorus, a tenth of the data for PyTorch, 1 rep")
    cfg = ap.parse_args()
    if os.environ.get("CHORUS_BENCH_QUICK", "0") not in ("", "0"):
        cfg.quick = True
    if cfg.reps is None:
        cfg.reps = 1 if cfg.quick else 3
    if cfg.reps < 1:
        ap.error("--reps must be >= 1")
    if cfg.workers < 1:
        ap.error("--workers must be >= 1")
    if cfg.epochs <= 0:
        ap.error("--epochs must be > 0")
    cfg.chorus_epochs = 0.1 if cfg.quick else cfg.epochs
    # pytorch_mlp.py times whole passes (its --quick: over a tenth of the data).
    cfg.torch_epochs = 1 if cfg.quick else max(1, round(cfg.epochs))
    cfg.chorus = os.path.join(cfg.build, "chorus")
    cfg.training_throughput = os.path.join(cfg.build, "bench", "training_throughput")
    for exe in (cfg.chorus, cfg.training_throughput):
        if not os.access(exe, os.X_OK):
            emit({"bench": "compare_cpu", "error": f"no {exe}; build first "
                  "(cmake --build BUILD --target chorus_cli bench_training_throughput)"})
            return 1
    venv = cfg.python_venv or os.path.join(cfg.build, "venv-torch")
    cfg.python_venv_exe = os.path.join(venv, "bin", "python")
    if not os.access(cfg.python_venv_exe, os.X_OK):
        missing = {"pip": f"no virtual environment at {venv} (`make bench` creates it; "
                          "or --python-venv PATH)"}
    else:
        missing = {"pip": torch_missing(cfg.python_venv_exe)}
    missing["debian"] = torch_missing(cfg.python_debian)
    if missing["debian"]:
        missing["debian"] += " (bash tools/install-deps.sh bench)"

    n = cfg.workers
    rows = make_rows(n)
    if cfg.rows:
        wanted = [r for r in cfg.rows.split(",") if r]
        unknown = [w for w in wanted if w not in {r["name"] for r in rows}]
        if unknown:
            ap.error(f"--rows: unknown {unknown} (valid: {', '.join(r['name'] for r in rows)})")
        rows = [r for r in rows if r["name"] in wanted]
    # Rows whose interpreter lacks torch: an error line each, no failure (as
    # bench/pytorch_mlp.py does), and the rest still run.
    for python, why in missing.items():
        skipped = [r for r in rows if r.get("python") == python]
        if why and skipped:
            note(f"{why}: rows {', '.join(r['name'] for r in skipped)} skipped")
            for r in skipped:
                emit({"bench": "compare_cpu", "row": r["name"], "error": why})
            rows = [r for r in rows if r.get("python") != python]

    if not rows:
        note("no rows left to run")
        return 0
    values = {r["name"]: [] for r in rows}
    last = {r["name"]: {} for r in rows}
    status = 0
    t_start = time.monotonic()
    for rep in range(cfg.reps):
        for row in rotated(rows, rep, cfg.reps):
            note(f"rep {rep + 1}/{cfg.reps}: {row['name']}")
            line = {"bench": "compare_cpu", "rep": rep + 1, "row": row["name"],
                    "load": load_average()}
            try:
                value, details = MEASURE[row["kind"]](cfg, row)
                values[row["name"]].append(value)
                last[row["name"]] = details
                line["samples_per_s"] = round(value, 1)
                line.update(details)
            except (RuntimeError, ValueError, KeyError) as e:
                line["error"] = str(e)
                note(f"{row['name']} failed: {e}")
                status = 1
            emit(line)
    note(f"{cfg.reps} repetition(s) of {len(rows)} rows in {time.monotonic() - t_start:.0f} s")

    med = {k: statistics.median(v) if v else None for k, v in values.items()}
    ref_torch = med.get("torch_pip_threads")
    ref_gemm = med.get("gemm_all_cores")
    table = []
    for row in rows:
        name = row["name"]
        v = med[name]
        label = torch_label(row, last[name]) if row["kind"] == "torch" else row["label"]
        r_torch = v / ref_torch if v and ref_torch else None
        r_gemm = v / ref_gemm if v and ref_gemm else None
        out = {"bench": "compare_cpu", "row": name, "label": label, "reps": cfg.reps,
               "workers": n, "batch": BATCH, "quick": cfg.quick}
        if v is None:
            out["error"] = "no successful run"
        else:
            out["median_samples_per_s"] = round(v, 1)
            out["samples_per_s_all"] = [round(x, 1) for x in values[name]]
            out["ratio_to_torch_pip_threads"] = round(r_torch, 3) if r_torch else None
            out["ratio_to_gemm_all_cores"] = round(r_gemm, 3) if r_gemm else None
        emit(out)
        table.append((label, v, r_torch, r_gemm, len(values[name])))
    text = markdown(table, cfg.reps)
    print(text, file=sys.stderr, end="", flush=True)
    if cfg.markdown:
        with open(cfg.markdown, "w") as f:
            f.write(text)
    return status


if __name__ == "__main__":
    sys.exit(main())
