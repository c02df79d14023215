#!/bin/sh
# Creates the virtual environment with PyPI's current PyTorch (pip install
# torch numpy; the wheels use MKL) that bench/run_all.sh and
# bench/compare_cpu.py run beside Debian's python3-torch. Used by `make
# bench` only: the download is large (several GB with the CUDA libraries pip's
# default torch wheel pulls in), so it lives in the build folder.
#
#   bench/torch_venv.sh [DIR]          (default: build/venv-torch)
#
# Reuses DIR when its python already imports torch and numpy. pip's cache
# (~/.cache/pip) serves a wheel downloaded before; PIP_INDEX_URL=
# https://download.pytorch.org/whl/cpu picks the smaller CPU-only wheel.
# Exits 1 with a message when it cannot (no network, no python3-venv); the
# Debian rows of the benchmarks still run without it.
set -u

venv=${1:-build/venv-torch}
base=${PYTHON:-/usr/bin/python3}

fail() {
  echo "torch_venv: $1; the pip PyTorch rows of make bench are skipped, the Debian ones still run" >&2
  exit 1
}

if [ -x "$venv/bin/python" ] && "$venv/bin/python" -c 'import torch, numpy' 2>/dev/null; then
  echo "torch_venv: reusing $venv (torch $("$venv/bin/python" -c 'import torch; print(torch.__version__)'))" >&2
  exit 0
fi

fresh=0
if [ ! -e "$venv" ]; then
  fresh=1
  echo "torch_venv: creating $venv ($base -m venv)" >&2
  "$base" -m venv "$venv" || {
    rm -rf "$venv"
    fail "could not create a virtual environment at $venv (Debian: apt-get install python3-venv, or bash tools/install-deps.sh bench)"
  }
elif [ ! -x "$venv/bin/pip" ]; then
  fail "$venv exists but is no virtual environment with pip; remove it or set TORCH_VENV"
fi

echo "torch_venv: pip install torch numpy into $venv (large; once)" >&2
if ! "$venv/bin/pip" install --disable-pip-version-check torch numpy >&2; then
  # Only a folder made here is removed (TORCH_VENV may name the user's own).
  [ "$fresh" = 1 ] && rm -rf "$venv"
  fail "pip could not install torch and numpy into $venv (no network? pip's message is above)"
fi
"$venv/bin/python" -c 'import torch, numpy' || fail "torch installed into $venv but does not import"
echo "torch_venv: $venv has torch $("$venv/bin/python" -c 'import torch; print(torch.__version__)')" >&2
exit 0
