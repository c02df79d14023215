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
# the scripts (default: Debian's /usr/bin/python3, which has python3-torch;
# the python3 first on PATH may be a different one). The PyTorch scripts also
# run with pip's PyTorch from the virtual environment TORCH_VENV (default
# BUILD_DIR/venv-torch, which `make bench` creates with bench/torch_venv.sh)
# when it is there; this script installs nothing.
set -u

build=${1:-build}
here=$(cd "$(dirname "$0")" && pwd)
python=${PYTHON:-/usr/bin/python3}
venv=${TORCH_VENV:-$build/venv-torch}
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
# Each JSON line names its interpreter, torch version and BLAS.
torch_scripts() {
  py=$1
  for script in pytorch_mlp pytorch_gpu; do
    if [ -x "$py" ]; then
      run_one "$script" "$py" "$here/$script.py"
    else
      echo "run_all: $py not found; PyTorch comparison skipped" >&2
      printf '{"bench":"%s","error":"%s not found"}\n' "$script" "$py"
    fi
  done
}
torch_scripts "$python"
if [ -x "$venv/bin/python" ]; then
  torch_scripts "$venv/bin/python"
else
  echo "run_all: no $venv/bin/python (make bench creates it); pip's PyTorch skipped" >&2
fi

# The comparison table of one sitting: bounds, Chorus, both PyTorch builds,
# interleaved repetitions (bench/compare_cpu.py; the markdown table on stderr).
if [ -x "$python" ]; then
  run_one compare_cpu "$python" "$here/compare_cpu.py" --build "$build" --python-venv "$venv" \
    --python-debian "$python"
else
  printf '{"bench":"compare_cpu","error":"%s not found"}\n' "$python"
fi

exit $status
