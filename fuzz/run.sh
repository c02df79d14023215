#!/usr/bin/env bash
# Builds the fuzz targets (fuzz/CMakeLists.txt) with clang and runs each for
# a bounded time on a scratch copy of its seed corpus.
#   fuzz/run.sh [BUILD_DIR [SECONDS [TARGET...]]]     (make fuzz calls it)
# Installs clang and libFuzzer (Debian: clang, libclang-rt-dev) when missing.
# Prints one line per target; exits 1 if any target found a crash, a leak,
# a hang (-timeout) or an allocation past -malloc_limit_mb, with the input
# saved under BUILD_DIR/artifacts/ and the fuzzer's log beside it.
set -euo pipefail
cd "$(dirname "$0")/.."
build=${1:-build-fuzz}
seconds=${2:-30}
shift $(( $# > 2 ? 2 : $# )) || true
targets=("$@")
((${#targets[@]})) || targets=(libsvm idx config topology buffer)
cxx=${FUZZ_CXX:-clang++}

fuzzer_lib() { "$cxx" -print-resource-dir 2>/dev/null | sed 's|$|/lib/linux/libclang_rt.fuzzer-x86_64.a|'; }
if ! command -v "$cxx" >/dev/null || [[ ! -e $(fuzzer_lib) ]]; then
  echo "fuzz: installing clang and libFuzzer"
  sudo=""; [[ $(id -u) -ne 0 ]] && sudo="sudo"
  export DEBIAN_FRONTEND=noninteractive
  $sudo apt-get update -qq
  $sudo apt-get install -y -qq --no-install-recommends clang libclang-rt-dev
fi

cmake -S . -B "$build" -DCMAKE_BUILD_TYPE=RelWithDebInfo -DCMAKE_CXX_COMPILER="$cxx" \
      -DCHORUS_BUILD_FUZZ=ON -DCHORUS_ENABLE_CUDA=OFF -DCHORUS_BUILD_TESTS=OFF \
      -DCHORUS_BUILD_EXAMPLES=OFF -DCHORUS_BUILD_BENCH=OFF >/dev/null
cmake --build "$build" -j "${JOBS:-$(nproc)}" --target "${targets[@]/#/fuzz_}"

mkdir -p "$build/artifacts" "$build/corpus"
failed=0
for t in "${targets[@]}"; do
  scratch="$build/corpus/$t"
  mkdir -p "$scratch"
  log="$build/artifacts/$t.log"
  # New inputs go to the scratch folder (first); the seeds are only read.
  if "$build/fuzz/fuzz_$t" "$scratch" "fuzz/corpus/$t" -max_total_time="$seconds" \
       -timeout=10 -rss_limit_mb=2048 -malloc_limit_mb=512 -print_final_stats=1 \
       -artifact_prefix="$build/artifacts/$t-" >"$log" 2>&1; then
    runs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log")
    echo "fuzz $t: clean, ${runs:-?} inputs in ${seconds} s"
  else
    failed=1
    echo "fuzz $t: FAILED (log: $log)"
    grep -E '^(==[0-9]+==ERROR|SUMMARY|.*runtime error|artifact_prefix|Test unit written)' "$log" | head -8 || tail -20 "$log"
  fi
done
exit $failed
