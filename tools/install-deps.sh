#!/usr/bin/env bash
# Installs what Chorus needs on Debian bookworm, only what is missing.
#   tools/install-deps.sh          build + test + demo: compiler, CMake, CAF,
#                                  Eigen, GoogleTest, zlib, Fashion-MNIST, UCX
#   tools/install-deps.sh bench    also, for bench/ (`make bench`): Debian's
#                                  PyTorch 1.13 with OpenBLAS (python3-torch,
#                                  python3-numpy, libopenblas0-pthread, made
#                                  libblas.so.3 below) and python3-venv, with
#                                  which bench/torch_venv.sh puts pip's current
#                                  PyTorch (MKL) into build/venv-torch
# Needs root (or sudo) only when something is missing.
set -euo pipefail

packages=(build-essential cmake pkg-config libcaf-dev libeigen3-dev libgtest-dev
          zlib1g-dev libopenblas-dev dataset-fashion-mnist libcaf-openssl0.17 libssl-dev openssl
          nlohmann-json3-dev python3-matplotlib libucx-dev)
if [[ "${1:-}" == "bench" ]]; then
  packages+=(python3-torch python3-numpy libopenblas0-pthread python3-venv)
fi

missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done

if ((${#missing[@]})); then
  echo "install-deps: installing ${missing[*]}"
  sudo=""
  if [[ $(id -u) -ne 0 ]]; then
    command -v sudo >/dev/null || { echo "install-deps: need root to install ${missing[*]}" >&2; exit 1; }
    sudo="sudo"
  fi
  export DEBIAN_FRONTEND=noninteractive
  $sudo apt-get update -qq
  $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi

# PyTorch must run on OpenBLAS, not the reference BLAS (15x slower): make the
# comparison in bench/ fair.
if [[ "${1:-}" == "bench" ]]; then
  alt=/usr/lib/x86_64-linux-gnu/openblas-pthread/libblas.so.3
  if [[ -e $alt ]] && command -v update-alternatives >/dev/null; then
    ${sudo:-} update-alternatives --set libblas.so.3-x86_64-linux-gnu "$alt" >/dev/null || true
    alt_l=/usr/lib/x86_64-linux-gnu/openblas-pthread/liblapack.so.3
    [[ -e $alt_l ]] && ${sudo:-} update-alternatives --set liblapack.so.3-x86_64-linux-gnu "$alt_l" >/dev/null || true
  fi
fi
exit 0
