#!/usr/bin/env bash
# Packs what a lent GPU machine needs to check the CUDA code into one folder
# (default build-gpu/bundle, under 64 MiB): the runner, the test binary and the
# GPU benchmark built for sm_90 without -march=native (that machine's CPU may
# differ) and without OpenBLAS (36 MB); the non-CUDA shared libraries they
# load; Fashion-MNIST; and run.sh, which runs every GPU check there.
#
#   bash tools/gpu-bundle.sh                 # here, with nvcc and Debian's packages
#   device: bash build-gpu/bundle/run.sh     # there; carry build-gpu/bundle
#
# Results land in $OUT (the device tool's output folder) or bundle/out.
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
build=${1:-$root/build-gpu}
data=${CHORUS_FASHION_MNIST:-/usr/share/datasets/fashion-mnist}
bundle=$build/bundle

command -v nvcc >/dev/null || [ -x /usr/local/cuda/bin/nvcc ] || {
  echo "gpu-bundle: no nvcc; the bundle needs the CUDA build" >&2
  exit 1
}
cmake -S "$root" -B "$build" -DCMAKE_BUILD_TYPE=Release -DCHORUS_ENABLE_CUDA=ON \
  -DCMAKE_CUDA_ARCHITECTURES=90 -DCHORUS_USE_BLAS=OFF -DCHORUS_NATIVE=OFF \
  -DCHORUS_BUILD_EXAMPLES=OFF
cmake --build "$build" -j "$(nproc)" --target chorus_cli chorus_tests bench_gpu_throughput

rm -rf "$bundle"
mkdir -p "$bundle/bin" "$bundle/lib" "$bundle/data"
cp "$build/chorus" "$build/tests/chorus_tests" "$build/bench/gpu_throughput" "$bundle/bin/"
strip "$bundle/bin/"*
# Every shared library the binaries load except the C runtime and CUDA's own
# (the GPU machine has the toolkit at /usr/local/cuda).
for exe in "$bundle/bin/"*; do
  ldd "$exe" | awk '/=> \// {print $3}'
done | sort -u | grep -v -E '/usr/local/cuda|/(libc|libm|libgcc_s|libstdc\+\+|libpthread|libdl|librt)\.so' |
  while read -r lib; do cp -L "$lib" "$bundle/lib/"; done
cp "$data"/*.gz "$bundle/data/"
cp "$root/bench/pytorch_gpu.py" "$bundle/"

cat >"$bundle/run.sh" <<'RUN'
#!/usr/bin/env bash
# Every GPU check, on the lent machine. Exit status: the GPU tests'.
here=$(cd "$(dirname "$0")" && pwd)
out=${OUT:-$here/out}
mkdir -p "$out"
export LD_LIBRARY_PATH="$here/lib:/usr/local/cuda/lib64:/usr/local/cuda/lib:${LD_LIBRARY_PATH:-}"
export CHORUS_BIN_DIR="$here/bin" CHORUS_FASHION_MNIST="$here/data"
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv | tee "$out/device.txt"
# cuDNN and NCCL are too big to carry (hundreds of MB): say at once if the
# machine's toolkit lacks them rather than fail inside the first test.
if ldd "$here/bin/chorus_tests" | grep 'not found' | tee "$out/missing_libs.txt" | grep -q .; then
  echo "run.sh: shared libraries missing on this machine (see missing_libs.txt)" >&2
  exit 2
fi
"$here/bin/chorus_tests" --gtest_filter='*cuda*:*nccl*:*gpu*' 2>&1 | tee "$out/gpu_tests.txt"
status=${PIPESTATUS[0]}
"$here/bin/chorus" train --backend cuda --devices 0 --workers 4 --data-dir "$here/data" \
  --out "$out/run" --quiet 2>&1 | tee "$out/train_cuda.txt"
"$here/bin/gpu_throughput" 2>&1 | tee "$out/gpu_throughput.jsonl"
if python3 -c 'import torch' 2>/dev/null; then
  python3 "$here/pytorch_gpu.py" --data "$here/data" 2>&1 | tee -a "$out/gpu_throughput.jsonl"
else
  echo '{"bench":"pytorch_gpu","error":"no torch on this machine"}' | tee -a "$out/gpu_throughput.jsonl"
fi
exit "$status"
RUN
chmod +x "$bundle/run.sh"
du -sh "$bundle"
