#!/usr/bin/python3
"""The PyTorch side of the MLP comparison with bench/training_throughput.

Trains the same network as Chorus's "mlp:256" (Linear 784-256, ReLU, Linear
256-10, cross-entropy, plain SGD lr 0.1, batch 64) on Fashion-MNIST read from
the same .gz IDX files and standardized the same way ((x/255 - mean)/std with
the training set's mean and std), one thread per process.

  single  one process; samples/s over one epoch (data loading and a few
          warm-up steps excluded).
  ddp     torch.distributed (gloo) on 127.0.0.1, 2 processes, each with batch
          64 on its half of the data, DistributedDataParallel; total samples/s.

Prints one JSON line per mode on stdout ({"bench":"pytorch_mlp","mode":...}),
progress on stderr. Run it with Debian's interpreter and python3-torch:

    /usr/bin/python3 bench/pytorch_mlp.py [--modes single,ddp] [--epochs 1]
        [--data /usr/share/datasets/fashion-mnist] [--quick]

Without torch (or numpy, or the data) it prints a JSON line with "error" and
exits 0, so `make bench` still completes on machines without them.
"""
import argparse
import gzip
import json
import os
import socket
import struct
import sys
import time

# One thread per process, for torch's intra-op pool and for the BLAS under it
# (set before torch loads OpenBLAS).
for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

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


def train_epochs(torch, model, x, y, epochs, seed):
    """Plain SGD over shuffled batches; returns (samples, seconds) of the
    timed part (after WARMUP_STEPS untimed steps)."""
    loss_fn = torch.nn.CrossEntropyLoss()
    opt = torch.optim.SGD(model.parameters(), lr=LR)
    gen = torch.Generator().manual_seed(seed)
    n = x.shape[0]
    steps_per_epoch = n // BATCH

    def step(idx):
        opt.zero_grad(set_to_none=True)
        loss = loss_fn(model(x[idx]), y[idx])
        loss.backward()
        opt.step()
        return loss

    perm = torch.randperm(n, generator=gen)
    for s in range(WARMUP_STEPS):
        step(perm[s * BATCH:(s + 1) * BATCH])
    samples = 0
    t0 = time.perf_counter()
    for _ in range(epochs):
        perm = torch.randperm(n, generator=gen)
        for s in range(steps_per_epoch):
            step(perm[s * BATCH:(s + 1) * BATCH])
            samples += BATCH
    return samples, time.perf_counter() - t0


def run_single(torch, data, epochs):
    torch.set_num_threads(1)
    torch.manual_seed(1)
    xtr, ytr, xte, yte = (torch.from_numpy(a) for a in data)
    model = make_model(torch)
    samples, seconds = train_epochs(torch, model, xtr, ytr, epochs, seed=1)
    return {
        "bench": "pytorch_mlp", "mode": "single", "processes": 1, "threads": 1,
        "model": "mlp:256", "batch": BATCH, "lr": LR, "epochs": epochs,
        "samples": samples, "seconds": seconds, "samples_per_s": samples / seconds,
        "test_acc": accuracy(torch, model, xte, yte),
        "torch": torch.__version__,
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


def ddp_worker(rank, world, port, data_dir, quick, epochs, queue):
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
        # This rank's half of the training set (a seeded IID split).
        perm = torch.randperm(xtr.shape[0], generator=torch.Generator().manual_seed(7))
        mine = perm[rank::world]
        x, y = xtr[mine].contiguous(), ytr[mine].contiguous()
        model = DistributedDataParallel(make_model(torch))
        dist.barrier()
        samples, seconds = train_epochs(torch, model, x, y, epochs, seed=100 + rank)
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


def run_ddp(torch, data_dir, quick, epochs, world=2):
    import torch.multiprocessing as mp
    ctx = mp.get_context("spawn")
    queue = ctx.SimpleQueue()
    port = free_port()
    mp.spawn(ddp_worker, args=(world, port, data_dir, quick, epochs, queue), nprocs=world, join=True)
    r = queue.get()
    return {
        "bench": "pytorch_mlp", "mode": "ddp", "backend": "gloo", "processes": world,
        "threads": 1, "model": "mlp:256", "batch": BATCH, "lr": LR, "epochs": epochs,
        "samples": r["samples"], "seconds": r["seconds"],
        "samples_per_s": r["samples"] / r["seconds"],
        "samples_per_s_per_process": r["samples"] / r["seconds"] / world,
        "test_acc": r["test_acc"], "torch": torch.__version__,
    }


def blas_info():
    """Which BLAS libtorch loaded (from /proc/self/maps), for the record."""
    try:
        with open("/proc/self/maps") as f:
            libs = {line.split()[-1] for line in f if "blas" in line.lower()}
        return sorted(os.path.basename(p) if "/" in p else p for p in libs)
    except OSError:
        return []


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--modes", default="single,ddp")
    ap.add_argument("--epochs", type=int, default=1)
    ap.add_argument("--data", default=os.environ.get(
        "CHORUS_FASHION_MNIST", "/usr/share/datasets/fashion-mnist"))
    ap.add_argument("--quick", action="store_true",
                    help="a tenth of the data (smoke run)")
    args = ap.parse_args()
    if os.environ.get("CHORUS_BENCH_QUICK", "0") not in ("", "0"):
        args.quick = True
    modes = [m for m in args.modes.split(",") if m]

    try:
        import numpy  # noqa: F401
        import torch
    except ImportError as e:
        note(f"PyTorch comparison skipped: {e} (install python3-torch and run with /usr/bin/python3)")
        emit({"bench": "pytorch_mlp", "error": f"import failed: {e}",
              "python": sys.executable})
        return 0
    try:
        note(f"loading Fashion-MNIST from {args.data}")
        data = load(args.data, args.quick)
    except (OSError, ValueError) as e:
        note(f"PyTorch comparison skipped: {e}")
        emit({"bench": "pytorch_mlp", "error": f"data: {e}"})
        return 0

    for mode in modes:
        note(f"mode {mode}")
        if mode == "single":
            out = run_single(torch, data, args.epochs)
            out["blas"] = blas_info()
        elif mode == "ddp":
            out = run_ddp(torch, args.data, args.quick, args.epochs)
        else:
            note(f"unknown mode {mode!r} (valid: single, ddp)")
            emit({"bench": "pytorch_mlp", "mode": mode, "error": "unknown mode"})
            continue
        emit(out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
