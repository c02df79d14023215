#!/usr/bin/python3
"""The PyTorch side of the MLP comparison with bench/training_throughput.

Trains the same network as Chorus's "mlp:256" (Linear 784-256, ReLU, Linear
256-10, cross-entropy, plain SGD lr 0.1, batch 64 per worker) on
Fashion-MNIST read from the same .gz IDX files and standardized the same way
((x/255 - mean)/std with the training set's mean and std).

  single   one process, 1 thread, batch B.
  threads  one process, T intra-op threads (torch.set_num_threads, and the
           BLAS's threads), batch T x B: the strongest single-machine peer of
           T synchronous workers at batch B each (the same averaged gradient
           per step). T defaults to every usable core (nproc).
  ddp      torch.distributed (gloo) on 127.0.0.1, P processes (default nproc),
           1 thread each, batch B each on its 1/P of the data,
           DistributedDataParallel; total samples/s.

samples/s is the steady state: data loading, process start-up and 20 warm-up
steps are excluded, then --epochs passes over the (per-process) training set
are timed. Prints one JSON line per mode on stdout ({"bench":"pytorch_mlp",
"mode":...}, with the interpreter, torch's version and the BLAS it uses),
progress on stderr. Any interpreter with torch and numpy works: Debian's
(python3-torch 1.13, OpenBLAS) or a virtual environment with pip's torch
(MKL), which `make bench` creates in BUILD/venv-torch:

    /usr/bin/python3 bench/pytorch_mlp.py [--modes single,threads,ddp]
        [--threads T] [--processes P] [--batch 64] [--epochs 1]
        [--data /usr/share/datasets/fashion-mnist] [--quick]

The threads mode needs idle cores: OpenMP's threads spin at every barrier,
and on a machine with other load it collapses (a smoke run at load average 7:
0.9k samples/s, 31k with OMP_WAIT_POLICY=PASSIVE).

The thread count of the BLAS is fixed when torch loads, so a run that mixes
`threads` with the one-thread modes runs `threads` in a child process of
this script. Without torch (or numpy, or the data) it prints a JSON line with
"error" and exits 0, so `make bench` still completes on machines without them.
"""
import argparse
import gzip
import json
import os
import re
import socket
import struct
import subprocess
import sys
import time

BATCH = 64
LR = 0.1
HIDDEN = 256
WARMUP_STEPS = 20


def note(text):
    print("[pytorch_mlp] " + text, file=sys.stderr, flush=True)


def emit(obj):
    print(json.dumps(obj, separators=(",", ":")), flush=True)


def read_idx(path, magic):
    with gzip.open(path, "rb") as f:
        raw = f.read()
    got = struct.unpack(">I", raw[:4])[0]
    if got != magic:
        raise ValueError(f"{path}: magic {got:#x}, expected {magic:#x}")
    ndim = magic & 0xFF
    dims = struct.unpack(">" + "I" * ndim, raw[4:4 + 4 * ndim])
    import numpy as np
    data = np.frombuffer(raw, dtype=np.uint8, offset=4 + 4 * ndim)
    return data.reshape(dims)


def load_fashion_mnist(data_dir):
    """Train and test sets as float32 (N, 784) and int64 labels, standardized
    like Chorus's load_fashion_mnist (one scalar mean and std of the training
    pixels in [0, 1])."""
    import numpy as np
    def images(name):
        x = read_idx(os.path.join(data_dir, name), 0x803)
        return x.reshape(x.shape[0], -1).astype(np.float32) / 255.0
    def labels(name):
        return read_idx(os.path.join(data_dir, name), 0x801).astype(np.int64)
    xtr = images("train-images-idx3-ubyte.gz")
    ytr = labels("train-labels-idx1-ubyte.gz")
    xte = images("t10k-images-idx3-ubyte.gz")
    yte = labels("t10k-labels-idx1-ubyte.gz")
    mean = float(xtr.mean(dtype=np.float64))
    std = float(xtr.std(dtype=np.float64))
    xtr = (xtr - mean) / std
    xte = (xte - mean) / std
    return xtr.astype(np.float32), ytr, xte.astype(np.float32), yte


def make_model(torch):
    return torch.nn.Sequential(
        torch.nn.Linear(784, HIDDEN), torch.nn.ReLU(), torch.nn.Linear(HIDDEN, 10))


def accuracy(torch, model, x, y):
    with torch.no_grad():
        return float((model(x).argmax(dim=1) == y).float().mean())


def set_blas_threads(threads):
    """Threads for torch's intra-op pool and the BLAS under it (OpenBLAS reads
    its count once, when torch loads it): call before importing torch."""
    for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ[var] = str(threads)


def usable_cores():
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


def train_epochs(torch, model, x, y, epochs, seed, batch):
    """Plain SGD over shuffled batches of `batch`; returns (samples, seconds)
    of the timed part (after WARMUP_STEPS untimed steps)."""
    loss_fn = torch.nn.CrossEntropyLoss()
    opt = torch.optim.SGD(model.parameters(), lr=LR)
    gen = torch.Generator().manual_seed(seed)
    n = x.shape[0]
    steps_per_epoch = n // batch
    if steps_per_epoch < 1:
        raise ValueError(f"batch {batch} is larger than the {n} training samples")

    def step(idx):
        opt.zero_grad(set_to_none=True)
        loss = loss_fn(model(x[idx]), y[idx])
        loss.backward()
        opt.step()
        return loss

    perm = torch.randperm(n, generator=gen)
    for s in range(WARMUP_STEPS):
        s %= steps_per_epoch
        step(perm[s * batch:(s + 1) * batch])
    samples = 0
    t0 = time.perf_counter()
    for _ in range(epochs):
        perm = torch.randperm(n, generator=gen)
        for s in range(steps_per_epoch):
            step(perm[s * batch:(s + 1) * batch])
            samples += batch
    return samples, time.perf_counter() - t0


def run_one_process(torch, data, epochs, threads, batch, mode):
    """`single` (threads 1) and `threads`: one process, `threads` intra-op
    threads, mini-batches of `batch`."""
    torch.set_num_threads(threads)
    torch.manual_seed(1)
    xtr, ytr, xte, yte = (torch.from_numpy(a) for a in data)
    model = make_model(torch)
    samples, seconds = train_epochs(torch, model, xtr, ytr, epochs, seed=1, batch=batch)
    return {
        "bench": "pytorch_mlp", "mode": mode, "processes": 1, "threads": threads,
        "model": "mlp:256", "batch": batch, "lr": LR, "epochs": epochs,
        "samples": samples, "seconds": seconds, "samples_per_s": samples / seconds,
        "test_acc": accuracy(torch, model, xte, yte),
    }


def free_port():
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def load(data_dir, quick):
    data = load_fashion_mnist(data_dir)
    if quick:
        data = (data[0][:6000], data[1][:6000], data[2], data[3])
    return data


def ddp_worker(rank, world, port, data_dir, quick, epochs, batch, queue):
    import torch
    import torch.distributed as dist
    from torch.nn.parallel import DistributedDataParallel
    torch.set_num_threads(1)
    os.environ["MASTER_ADDR"] = "127.0.0.1"
    os.environ["MASTER_PORT"] = str(port)
    dist.init_process_group("gloo", rank=rank, world_size=world)
    try:
        torch.manual_seed(1)  # the same initial weights everywhere (DDP broadcasts rank 0's anyway)
        # Each process reads the files itself: cheaper than pickling 200 MB to it.
        xtr, ytr, xte, yte = (torch.from_numpy(a) for a in load(data_dir, quick))
        # This rank's 1/world of the training set (a seeded IID split).
        perm = torch.randperm(xtr.shape[0], generator=torch.Generator().manual_seed(7))
        mine = perm[rank::world]
        x, y = xtr[mine].contiguous(), ytr[mine].contiguous()
        model = DistributedDataParallel(make_model(torch))
        dist.barrier()
        samples, seconds = train_epochs(torch, model, x, y, epochs, seed=100 + rank, batch=batch)
        # The run ends when the slowest rank ends.
        t = torch.tensor([seconds], dtype=torch.float64)
        dist.all_reduce(t, op=dist.ReduceOp.MAX)
        s = torch.tensor([samples], dtype=torch.float64)
        dist.all_reduce(s, op=dist.ReduceOp.SUM)
        if rank == 0:
            queue.put({"samples": int(s.item()), "seconds": float(t.item()),
                       "test_acc": accuracy(torch, model.module, xte, yte)})
    finally:
        dist.destroy_process_group()


def run_ddp(torch, data_dir, quick, epochs, world, batch):
    import torch.multiprocessing as mp
    ctx = mp.get_context("spawn")
    queue = ctx.SimpleQueue()
    port = free_port()
    mp.spawn(ddp_worker, args=(world, port, data_dir, quick, epochs, batch, queue),
             nprocs=world, join=True)
    r = queue.get()
    return {
        "bench": "pytorch_mlp", "mode": "ddp", "backend": "gloo", "processes": world,
        "threads": 1, "model": "mlp:256", "batch": batch, "lr": LR, "epochs": epochs,
        "samples": r["samples"], "seconds": r["seconds"],
        "samples_per_s": r["samples"] / r["seconds"],
        "samples_per_s_per_process": r["samples"] / r["seconds"] / world,
        "test_acc": r["test_acc"],
    }


def blas_info(torch):
    """The BLAS torch was built for (BLAS_INFO in torch.__config__.show():
    "mkl" for pip's wheels, "generic" for Debian's, which then calls the
    libblas.so.3 the system's alternatives select), and the BLAS libraries
    this process mapped (/proc/self/maps), as folder/file."""
    m = re.search(r"BLAS_INFO=(\w+)", torch.__config__.show())
    libs = set()
    try:
        with open("/proc/self/maps") as f:
            for line in f:
                path = line.split()[-1]
                name = os.path.basename(path).lower()
                if "blas" in name and "cublas" not in name:  # not the GPU one
                    libs.add(os.path.join(os.path.basename(os.path.dirname(path)),
                                          os.path.basename(path)))
    except OSError:
        pass
    return {"blas": m.group(1) if m else "unknown", "blas_libs": sorted(libs)}


def run_in_child(args, mode):
    """Runs this script for `mode` alone in a child process (its own BLAS
    thread count) and passes its JSON lines on; False if it failed."""
    cmd = [sys.executable, os.path.abspath(__file__), "--modes", mode,
           "--epochs", str(args.epochs), "--data", args.data, "--batch", str(args.batch),
           "--threads", str(args.threads), "--processes", str(args.processes)]
    if args.quick:
        cmd.append("--quick")
    p = subprocess.run(cmd, stdout=subprocess.PIPE, text=True)
    sys.stdout.write(p.stdout)
    sys.stdout.flush()
    return p.returncode == 0


MODES = ("single", "threads", "ddp")


def main():
    ap = argparse.ArgumentParser(
        description=__doc__.split("\n")[0],
        epilog="Modes: single (1 thread), threads (T intra-op threads, batch T x B), "
               "ddp (P gloo processes). See the file's docstring.")
    ap.add_argument("--modes", default="single,threads,ddp",
                    help="comma list of " + ", ".join(MODES) + " [%(default)s]")
    ap.add_argument("--epochs", type=int, default=1, help="timed passes [%(default)s]")
    ap.add_argument("--batch", type=int, default=BATCH,
                    help="mini-batch per worker (threads mode: T times it) [%(default)s]")
    ap.add_argument("--threads", type=int, default=usable_cores(),
                    help="intra-op threads of the threads mode [nproc: %(default)s]")
    ap.add_argument("--processes", type=int, default=usable_cores(),
                    help="gloo processes of the ddp mode [nproc: %(default)s]")
    ap.add_argument("--data", default=os.environ.get(
        "CHORUS_FASHION_MNIST", "/usr/share/datasets/fashion-mnist"))
    ap.add_argument("--quick", action="store_true",
                    help="a tenth of the data (smoke run)")
    args = ap.parse_args()
    if os.environ.get("CHORUS_BENCH_QUICK", "0") not in ("", "0"):
        args.quick = True
    modes = [m for m in args.modes.split(",") if m]
    bad = [m for m in modes if m not in MODES]
    if bad or not modes:
        ap.error(f"--modes: unknown {bad} (valid: {', '.join(MODES)})")
    for name in ("epochs", "batch", "threads", "processes"):
        if getattr(args, name) < 1:
            ap.error(f"--{name} must be >= 1")

    # One BLAS thread count per process: `threads` alone gets T, anything
    # else 1 (and a `threads` mode among others runs in a child).
    set_blas_threads(args.threads if modes == ["threads"] else 1)
    try:
        import numpy  # noqa: F401
        import torch
    except ImportError as e:
        note(f"PyTorch comparison skipped: {e} (install python3-torch and run with "
             "/usr/bin/python3, or pip install torch numpy in a virtual environment)")
        emit({"bench": "pytorch_mlp", "error": f"import failed: {e}",
              "python": sys.executable})
        return 0
    status = 0
    try:
        note(f"torch {torch.__version__} ({sys.executable}); "
             f"loading Fashion-MNIST from {args.data}")
        data = load(args.data, args.quick)
    except (OSError, ValueError) as e:
        note(f"PyTorch comparison skipped: {e}")
        emit({"bench": "pytorch_mlp", "error": f"data: {e}", "python": sys.executable})
        return 0
    about = {"torch": torch.__version__, "python": sys.executable}
    about.update(blas_info(torch))

    for mode in modes:
        note(f"mode {mode}")
        if mode == "threads" and modes != ["threads"]:
            if not run_in_child(args, mode):
                status = 1
            continue
        try:
            if mode == "single":
                out = run_one_process(torch, data, args.epochs, 1, args.batch, mode)
            elif mode == "threads":
                out = run_one_process(torch, data, args.epochs, args.threads,
                                      args.threads * args.batch, mode)
            else:
                out = run_ddp(torch, args.data, args.quick, args.epochs, args.processes,
                              args.batch)
        except Exception as e:  # a DDP rank's failure arrives as torch's own type
            note(f"mode {mode} failed: {e}")
            out, status = {"bench": "pytorch_mlp", "mode": mode, "error": str(e)}, 1
        out.update(about)
        emit(out)
    return status


if __name__ == "__main__":
    sys.exit(main())
