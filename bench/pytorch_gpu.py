#!/usr/bin/python3
"""The PyTorch side of bench/gpu_throughput's "gpu_training" lines.

Trains, on one CUDA device, the same two networks as Chorus's GPU workers:

  mlp   Linear 784-1024, ReLU, Linear 1024-1024, ReLU, Linear 1024-10
        (Chorus "mlp:1024,1024")
  cnn   Conv 3x3 1->8 pad 1, ReLU, MaxPool 2; Conv 3x3 8->16 pad 1, ReLU,
        MaxPool 2; Linear 16*7*7 -> 10 (Chorus "cnn" = "cnn:8,16")

with cross-entropy, plain SGD (lr 0.05), batch 64, on Fashion-MNIST read from
the same .gz IDX files and standardized the same way. The data sit on the GPU
(as Chorus's device models keep them), so neither side pays a per-step host
copy. "replicas" R runs R independent models round-robin in one process, the
closest single-process analogue of R Chorus workers sharing one GPU
(synchronous DDP would need R processes and NCCL ranks on one device, which
NCCL does not allow).

Prints one JSON line per (model, replicas) on stdout, progress on stderr:

    python3 bench/pytorch_gpu.py [--steps 600] [--replicas 1,4,8]
        [--data /usr/share/datasets/fashion-mnist] [--device 0]

Without torch, CUDA, or the data it prints a JSON line with "error" and exits
0, so `make bench` completes on machines without them.
"""
import argparse
import gzip
import json
import os
import struct
import sys
import time

BATCH = 64
LR = 0.05
WARMUP_STEPS = 20


def emit(obj):
    print(json.dumps(obj), flush=True)


def read_idx(path, magic_expected):
    with gzip.open(path, "rb") as f:
        data = f.read()
    magic, count = struct.unpack(">II", data[:8])
    if magic != magic_expected:
        raise ValueError(f"{path}: magic {magic:#x}, expected {magic_expected:#x}")
    if magic == 0x803:
        rows, cols = struct.unpack(">II", data[8:16])
        return data[16:], count, rows * cols
    return data[8:], count, 1


def load(dirname, torch, device):
    images, n, d = read_idx(os.path.join(dirname, "train-images-idx3-ubyte.gz"), 0x803)
    labels, _, _ = read_idx(os.path.join(dirname, "train-labels-idx1-ubyte.gz"), 0x801)
    x = torch.frombuffer(bytearray(images), dtype=torch.uint8).float().div_(255.0).view(n, d)
    x = (x - x.mean()) / x.std()
    y = torch.frombuffer(bytearray(labels), dtype=torch.uint8).long()
    return x.to(device), y.to(device)


def make_model(torch, kind):
    nn = torch.nn
    if kind == "mlp":
        return nn.Sequential(nn.Linear(784, 1024), nn.ReLU(), nn.Linear(1024, 1024), nn.ReLU(),
                             nn.Linear(1024, 10))
    return nn.Sequential(nn.Unflatten(1, (1, 28, 28)),
                         nn.Conv2d(1, 8, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
                         nn.Conv2d(8, 16, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
                         nn.Flatten(), nn.Linear(16 * 7 * 7, 10))


def run(torch, x, y, kind, replicas, steps, device):
    models = [make_model(torch, kind).to(device) for _ in range(replicas)]
    opts = [torch.optim.SGD(m.parameters(), lr=LR) for m in models]
    loss_fn = torch.nn.CrossEntropyLoss()
    gen = torch.Generator(device="cpu").manual_seed(1)
    n = x.shape[0]

    def step(i):
        for m, o in zip(models, opts):
            idx = torch.randint(0, n, (BATCH,), generator=gen).to(device, non_blocking=True)
            o.zero_grad(set_to_none=True)
            loss = loss_fn(m(x[idx]), y[idx])
            loss.backward()
            o.step()

    for i in range(WARMUP_STEPS):
        step(i)
    torch.cuda.synchronize(device)
    t0 = time.perf_counter()
    for i in range(steps):
        step(i)
    torch.cuda.synchronize(device)
    seconds = time.perf_counter() - t0
    return steps * replicas * BATCH / seconds


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--steps", type=int, default=600)
    ap.add_argument("--replicas", default="1,4,8")
    ap.add_argument("--data", default=os.environ.get("CHORUS_FASHION_MNIST",
                                                     "/usr/share/datasets/fashion-mnist"))
    ap.add_argument("--device", type=int, default=0)
    args = ap.parse_args()
    try:
        import torch
    except ImportError as e:
        emit({"bench": "pytorch_gpu", "error": f"no torch: {e}", "python": sys.executable})
        return 0
    if not torch.cuda.is_available():
        emit({"bench": "pytorch_gpu", "error": "torch sees no CUDA device",
              "torch": torch.__version__, "python": sys.executable})
        return 0
    device = torch.device("cuda", args.device)
    try:
        x, y = load(args.data, torch, device)
    except (OSError, ValueError) as e:
        emit({"bench": "pytorch_gpu", "error": str(e)})
        return 0
    name = torch.cuda.get_device_name(device)
    for kind in ("mlp", "cnn"):
        for r in (int(v) for v in args.replicas.split(",")):
            print(f"[pytorch_gpu] {kind} replicas={r}", file=sys.stderr)
            sps = run(torch, x, y, kind, r, args.steps, device)
            emit({"bench": "pytorch_gpu", "device": name, "model": kind, "replicas": r,
                  "batch": BATCH, "samples_per_s": sps, "torch": torch.__version__,
                  "python": sys.executable})
    return 0


if __name__ == "__main__":
    sys.exit(main())
