# Chorus — the two commands that matter, plus the benchmarks.
#   make demo    install what is missing, build, train the default experiment
#   make test    install what is missing, build, run every test with ctest, then
#                build and run an app against the installed Chorus (check-install)
#   make bench   build and run the benchmarks (JSON lines), PyTorch side by side
BUILD ?= build
JOBS ?= $(shell nproc)
CMAKE_FLAGS ?= -DCMAKE_BUILD_TYPE=Release

.PHONY: deps deps-bench configure build demo test check-install bench clean

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

bench: deps-bench configure
	cmake --build $(BUILD) -j $(JOBS)
	bash bench/run_all.sh $(BUILD)

clean:
	rm -rf $(BUILD)
