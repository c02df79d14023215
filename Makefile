# Chorus — the two commands that matter, plus the benchmarks.
#   make demo    install what is missing, build, train the default experiment
#   make test    install what is missing, build, run every test with ctest
#   make bench   build and run the benchmarks (JSON lines), PyTorch side by side
BUILD ?= build
JOBS ?= $(shell nproc)
CMAKE_FLAGS ?= -DCMAKE_BUILD_TYPE=Release

.PHONY: deps deps-bench configure build demo test bench clean

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

test: build
	cd $(BUILD) && ctest --output-on-failure -j $(JOBS) --no-tests=error

bench: deps-bench configure
	cmake --build $(BUILD) -j $(JOBS)
	bash bench/run_all.sh $(BUILD)

clean:
	rm -rf $(BUILD)
