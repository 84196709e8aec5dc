# Top-level entry points. `make test` and `make demo` work on a fresh Debian 12 machine as root.
BUILD_DIR ?= build
BUILD_TYPE ?= Release
JOBS ?= $(shell nproc)
CTEST_ARGS ?=

.PHONY: all deps configure build build-tandem test demo bench clean format

all: build

deps:
	@bash scripts/install-deps.sh

configure: deps
	@cmake -S . -B $(BUILD_DIR) -G Ninja -DCMAKE_BUILD_TYPE=$(BUILD_TYPE) >/dev/null

build: configure
	@cmake --build $(BUILD_DIR) -j $(JOBS)

build-tandem: configure
	@cmake --build $(BUILD_DIR) -j $(JOBS) --target tandem

# The main job: LeNet on Fashion-MNIST (Debian's dataset-fashion-mnist), two DDP workers started
# by tandem's own launcher. Interrupt it with Ctrl-C and run it again: it resumes.
demo: build-tandem
	@$(BUILD_DIR)/launcher/tandem launch --nproc-per-node 2 configs/fashion_mnist_cnn.yaml \
		strategy.name=ddp

test: build
	@cd $(BUILD_DIR) && ctest --output-on-failure -j $(JOBS) $(CTEST_ARGS)

bench: build
	@cmake --build $(BUILD_DIR) -j $(JOBS) --target benchmarks

clean:
	@rm -rf $(BUILD_DIR)

format:
	@git ls-files '*.h' '*.cc' '*.cu' | xargs clang-format -i
