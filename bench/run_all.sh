#!/bin/sh
# Runs every Chorus benchmark and then the PyTorch comparison; all JSON lines
# go to stdout (one object per line), progress to stderr. Used by `make bench`.
#
#   bench/run_all.sh [BUILD_DIR]        (default: build)
#   bench/run_all.sh build > bench.jsonl
#
# A benchmark that fails leaves {"bench":NAME,"error":...} in the output; the
# script runs the rest and exits 1 at the end. CHORUS_BENCH_QUICK=1 asks
# every benchmark for a short smoke run. PYTHON overrides the interpreter for
# the PyTorch script (default: Debian's /usr/bin/python3, which has
# python3-torch; the python3 first on PATH may be a different one).
set -u

build=${1:-build}
here=$(cd "$(dirname "$0")" && pwd)
python=${PYTHON:-/usr/bin/python3}
status=0

if [ ! -d "$build/bench" ]; then
  echo "run_all: no $build/bench; build first (cmake -S . -B $build && make -C $build -j2)" >&2
  exit 1
fi

# Runs one benchmark (NAME, then its command line); a failure leaves an
# error line and makes the script's status 1.
run_one() {
  name=$1
  shift
  echo "run_all: $name" >&2
  "$@"
  rc=$?
  if [ $rc -ne 0 ]; then
    echo "run_all: $name failed with status $rc" >&2
    printf '{"bench":"%s","error":"exit status %d"}\n' "$name" "$rc"
    status=1
  fi
}

# Every program in build/bench, each with no arguments (bench/cluster_round.py,
# below, needs $build/chorus too). remote_payload starts
# its own peer (itself with --serve, on 127.0.0.1) and waits for it to exit.
for exe in "$build"/bench/*; do
  [ -f "$exe" ] && [ -x "$exe" ] || continue
  run_one "$(basename "$exe")" "$exe"
done

# cluster_round runs the chorus binary itself (train --processes, several
# times per configuration) and bench/pytorch_mlp.py --modes ddp.
if [ -x "$python" ]; then
  run_one cluster_round "$python" "$here/cluster_round.py" --build "$build" --python "$python"
else
  echo "run_all: $python not found; cluster_round skipped" >&2
  printf '{"bench":"cluster_round","error":"%s not found"}\n' "$python"
fi

# pytorch_gpu reports "torch sees no CUDA device" and exits 0 on CPU machines.
for script in pytorch_mlp pytorch_gpu; do
  if [ -x "$python" ]; then
    run_one "$script" "$python" "$here/$script.py"
  else
    echo "run_all: $python not found; PyTorch comparison skipped" >&2
    printf '{"bench":"%s","error":"%s not found"}\n' "$script" "$python"
  fi
done

exit $status
