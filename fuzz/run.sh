#!/usr/bin/env bash
# Builds the fuzz targets (fuzz/CMakeLists.txt) with clang and runs each for
# a bounded time on a scratch copy of its seed corpus.
#   fuzz/run.sh [BUILD_DIR [SECONDS [TARGET...]]]     (make fuzz calls it)
# Installs clang and libFuzzer (Debian: clang, libclang-rt-dev) when missing.
# Runs FUZZ_JOBS targets at a time (default: nproc; .ci/run runs all six,
# two at a time: three rounds, as with five). Prints one line per target; exits 1 if any target found a
# crash, a leak, a hang (-timeout) or an allocation past -malloc_limit_mb,
# with the input saved under BUILD_DIR/artifacts/ (named on the output, and
# printed in base64 when small) and the fuzzer's log beside it.
set -euo pipefail
cd "$(dirname "$0")/.."
build=${1:-build-fuzz}
seconds=${2:-30}
shift $(( $# > 2 ? 2 : $# )) || true
targets=("$@")
((${#targets[@]})) || targets=(libsvm idx npy config topology buffer)
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
# One target per call: with the Makefile generator, several --target at once
# become parallel sub-makes that each build the layers they share (measured:
# the same objects compiled two and three times over).
for t in "${targets[@]}"; do
  cmake --build "$build" -j "${JOBS:-$(nproc)}" --target "fuzz_$t"
done

mkdir -p "$build/artifacts" "$build/corpus"
rm -f "$build/artifacts"/*  # findings of an earlier run are not this run's
# FUZZ_JOBS targets at a time (default: one per core), each single-threaded.
jobs=${FUZZ_JOBS:-$(nproc)}
run_one() {
  local t=$1 scratch="$build/corpus/$1" log="$build/artifacts/$1.log" status=0
  mkdir -p "$scratch"
  # New inputs go to the scratch folder (first); the seeds are only read.
  "$build/fuzz/fuzz_$t" "$scratch" "fuzz/corpus/$t" -max_total_time="$seconds" \
    -timeout=10 -rss_limit_mb=2048 -malloc_limit_mb=512 -print_final_stats=1 \
    -artifact_prefix="$build/artifacts/$t-" >"$log" 2>&1 || status=$?
  echo "$status" >"$build/artifacts/$t.status"
}
running=0
for t in "${targets[@]}"; do
  if ((running >= jobs)); then wait -n || true; running=$((running - 1)); fi
  run_one "$t" &
  running=$((running + 1))
done
wait

# One line per target, in order; a finding also prints the fuzzer's report,
# the saved input's path and the input itself (base64, when under 4 KiB), so
# a CI log alone is enough to reproduce it:
#   base64 -d > crash && build-fuzz/fuzz/fuzz_<target> crash
failed=0
for t in "${targets[@]}"; do
  log="$build/artifacts/$t.log"
  status=$(cat "$build/artifacts/$t.status" 2>/dev/null || echo "?")
  if [[ $status == 0 ]]; then
    runs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log")
    echo "fuzz $t: clean, ${runs:-?} inputs in ${seconds} s"
    continue
  fi
  failed=1
  echo "fuzz $t: FAILED (exit $status; log: $log)"
  grep -E '^(==[0-9]+==ERROR|SUMMARY|.*runtime error|Test unit written)' "$log" | head -8 || tail -20 "$log"
  for input in "$build/artifacts/$t"-*; do
    [[ -f $input ]] || continue
    echo "fuzz $t: input saved as $input ($(stat -c %s "$input") bytes); reproduce: $build/fuzz/fuzz_$t $input"
    if (($(stat -c %s "$input") < 4096)); then
      echo "fuzz $t: the input, base64:"
      base64 "$input"
    fi
  done
done
exit $failed
