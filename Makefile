# Chorus — the two commands that matter, plus the benchmarks.
#   make demo    install what is missing, build, train the default experiment
#   make test    install what is missing, build, run every test with ctest, then
#                build and run an app against the installed Chorus (check-install)
#   make bench   build and run the benchmarks (JSON lines), PyTorch side by side
#                (Debian's, and pip's current one in $(TORCH_VENV), created once)
#   make test-sanitize   the tests again under ASan + UBSan (CPU only, build-sanitize/)
#   make fuzz    build the libFuzzer targets with clang and run each for
#                FUZZ_SECONDS (default 30) on its seed corpus (build-fuzz/)
BUILD ?= build
# pip's PyTorch for `make bench` (several GB, so only that target creates it);
# TORCH_VENV=/path/to/venv reuses one made elsewhere.
TORCH_VENV ?= $(BUILD)/venv-torch
JOBS ?= $(shell nproc)
CMAKE_FLAGS ?= -DCMAKE_BUILD_TYPE=Release

.PHONY: deps deps-bench configure build demo test check-install test-sanitize fuzz bench clean

deps:
	bash tools/install-deps.sh

deps-bench:
	bash tools/install-deps.sh bench

configure: deps
	cmake -S . -B $(BUILD) $(CMAKE_FLAGS)

build: configure
	cmake --build $(BUILD) -j $(JOBS)

demo: build
	./$(BUILD)/chorus train --out runs/demo
	@echo "plot it: ./$(BUILD)/chorus plot runs/demo --x epochs --y test_acc --out runs/demo/test_acc.png"

# check-install first, so that ctest's summary is the last thing printed.
test: build
	$(MAKE) --no-print-directory check-install
	cd $(BUILD) && ctest --output-on-failure -j $(JOBS) --no-tests=error

# Embedding as a user would: `cmake --install` the build into a scratch prefix,
# then build tests/consumer/ (find_package(chorus), chorus::chorus) against it
# with the same compiler, and run it (2 workers, sync_sgd; exits 1 unless the
# loss dropped). Expects a finished build.
CONSUMER := $(abspath $(BUILD))/consumer
check-install:
	rm -rf $(CONSUMER)
	cmake --install $(BUILD) --prefix $(CONSUMER)/prefix
	cmake -S tests/consumer -B $(CONSUMER)/build -DCMAKE_BUILD_TYPE=Release \
	      -DCMAKE_PREFIX_PATH=$(CONSUMER)/prefix \
	      -DCMAKE_CXX_COMPILER="$$(sed -n 's/^CMAKE_CXX_COMPILER:[A-Z]*=//p' $(BUILD)/CMakeCache.txt)"
	cmake --build $(CONSUMER)/build -j $(JOBS)
	$(CONSUMER)/build/chorus_consumer

# The suite again with AddressSanitizer (+ LeakSanitizer) and UBSan, float
# casts included; any report fails its test. CPU only and -O1 to keep the
# build short; a build folder of its own so `make test`'s stays as it is.
# Every report, from a test or from a chorus process a test starts, is also
# written under $(SAN_BUILD)/sanitizer-reports/: a CLI test that expects exit
# status 1 would otherwise pass on a child's report (the sanitizers exit 1 too,
# and the test reads only stdout), so after ctest any file there fails the
# target and is printed. SAN_TESTS, a ctest regex, runs a subset
# (e.g. `make test-sanitize SAN_TESTS='^(idx|libsvm|hostile)'`); empty runs all.
SAN_BUILD ?= build-sanitize
SAN_TESTS ?=
SAN_FLAGS := -fsanitize=address,undefined -fsanitize=float-cast-overflow \
             -fno-sanitize-recover=all -fno-omit-frame-pointer
SAN_REPORTS = $(abspath $(SAN_BUILD))/sanitizer-reports
test-sanitize: deps
	cmake -S . -B $(SAN_BUILD) -DCMAKE_BUILD_TYPE=RelWithDebInfo \
	      -DCMAKE_CXX_FLAGS_RELWITHDEBINFO="-O1 -g1" -DCMAKE_CXX_FLAGS="$(SAN_FLAGS)" \
	      -DCMAKE_EXE_LINKER_FLAGS="$(SAN_FLAGS)" -DCMAKE_SHARED_LINKER_FLAGS="$(SAN_FLAGS)" \
	      -DCHORUS_ENABLE_CUDA=OFF -DCHORUS_BUILD_BENCH=OFF -DCHORUS_BUILD_EXAMPLES=OFF
	cmake --build $(SAN_BUILD) -j $(JOBS) --target chorus_tests chorus_cli
	rm -rf $(SAN_REPORTS) && mkdir -p $(SAN_REPORTS)
	cd $(SAN_BUILD) && status=0 && \
	  ASAN_OPTIONS=detect_leaks=1:abort_on_error=0:log_path=$(SAN_REPORTS)/asan \
	  UBSAN_OPTIONS=print_stacktrace=1:log_path=$(SAN_REPORTS)/ubsan \
	  LSAN_OPTIONS=suppressions=$(abspath tools/lsan-caf.supp):print_suppressions=0 \
	  ctest --output-on-failure -j $(JOBS) --no-tests=error $(if $(SAN_TESTS),-R '$(SAN_TESTS)') || status=$$?; \
	if [ -n "$$(ls -A $(SAN_REPORTS))" ]; then \
	  echo "test-sanitize: sanitizer reports (a failed test above may show none: they are here):"; \
	  for f in $(SAN_REPORTS)/*; do echo "== $$f"; cat "$$f"; done; exit 1; \
	fi; exit $$status

# libFuzzer targets (fuzz/): clang only, a build folder of their own. Each
# target runs FUZZ_SECONDS on a scratch copy of fuzz/corpus/<target>/ (new
# inputs do not land in the repository); a crash leaves its input in
# $(FUZZ_BUILD)/artifacts/ and fails the target. FUZZ_JOBS targets run at
# a time (default: one per core).
FUZZ_BUILD ?= build-fuzz
FUZZ_SECONDS ?= 30
fuzz: deps
	JOBS=$(JOBS) $(if $(FUZZ_JOBS),FUZZ_JOBS=$(FUZZ_JOBS)) bash fuzz/run.sh $(FUZZ_BUILD) $(FUZZ_SECONDS)

# A venv that cannot be made (no network) leaves a message; the rest runs.
bench: deps-bench configure
	cmake --build $(BUILD) -j $(JOBS)
	-bash bench/torch_venv.sh $(TORCH_VENV)
	TORCH_VENV=$(TORCH_VENV) bash bench/run_all.sh $(BUILD)

clean:
	rm -rf $(BUILD)
