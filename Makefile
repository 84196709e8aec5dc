# Top-level entry points. `make test` and `make demo` work on a fresh Debian 12 machine as root.
BUILD_DIR ?= build
BUILD_TYPE ?= Release
JOBS ?= $(shell nproc)
CTEST_ARGS ?=

FUZZ_DIR ?= build-fuzz
FUZZ_SECONDS ?= 600
FUZZ_PARALLEL ?= 1
ASAN_DIR ?= build-asan
TSAN_DIR ?= build-tsan

.PHONY: all deps configure build build-tandem test check check-long demo bench clean format fuzz sanitize \
	sanitize-unit tsan

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

# What CI runs. On the Release build: every test except the unit tests above core (label `unit`;
# core's are `unit-core`) and the `long` ones. Then every unit test under ASan + UBSan
# (`make sanitize-unit`), also when the first part failed; the exit status says if either did.
test: build
	@cd $(BUILD_DIR) && ctest --output-on-failure -j $(JOBS) -LE '^(unit|long)$$' $(CTEST_ARGS); \
	status=$$?; $(MAKE) --no-print-directory -C $(CURDIR) sanitize-unit || status=1; exit $$status

# Every test but the `long` ones on the Release build alone; `check-long` runs those.
check: build
	@cd $(BUILD_DIR) && ctest --output-on-failure -j $(JOBS) -LE '^long$$' $(CTEST_ARGS)

check-long: build
	@cd $(BUILD_DIR) && ctest --output-on-failure -j $(JOBS) -L '^long$$' $(CTEST_ARGS)

bench: build
	@cmake --build $(BUILD_DIR) -j $(JOBS) --target benchmarks

# libFuzzer (clang) builds of tests/fuzz in their own build directory, each target run for
# FUZZ_SECONDS (FUZZ_PARALLEL at a time); prints executions and crashes per target. `make test`
# only replays the committed corpora.
fuzz:
	@bash scripts/install-deps.sh fuzz
	@cmake -S . -B $(FUZZ_DIR) -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo -DTANDEM_CUDA=OFF \
		-DBUILD_TESTING=OFF -DTANDEM_FUZZ=ON -DCMAKE_C_COMPILER=clang-14 \
		-DCMAKE_CXX_COMPILER=clang++-14 >/dev/null
	@cmake --build $(FUZZ_DIR) -j $(JOBS) --target fuzzers
	@FUZZ_SECONDS=$(FUZZ_SECONDS) FUZZ_PARALLEL=$(FUZZ_PARALLEL) bash scripts/fuzz.sh $(FUZZ_DIR) \
		$(FUZZ_TARGETS)

# ASan + UBSan build (CUDA off): `sanitize-unit` runs the unit tests (and replays the fuzz corpora)
# there, as `make test` does; `sanitize` adds the multiprocess tests, then the TSan build.
# Suppressions (scripts/sanitizers/) cover system libraries only, each with its reason. The
# multiprocess tests run one at a time: two ASan training jobs side by side (6 processes on 2
# cores) outlast their timeouts.
SAN_ENV = ASAN_OPTIONS=detect_leaks=1:abort_on_error=1:strict_string_checks=1 \
	LSAN_OPTIONS=suppressions=$(CURDIR)/scripts/sanitizers/lsan.supp:print_suppressions=0:fast_unwind_on_malloc=0 \
	UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
	OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
sanitize-unit: deps
	@cmake -S . -B $(ASAN_DIR) -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo -DTANDEM_CUDA=OFF \
		-DTANDEM_SANITIZE=address,undefined >/dev/null
	@cmake --build $(ASAN_DIR) -j $(JOBS)
	@cd $(ASAN_DIR) && $(SAN_ENV) ctest --output-on-failure -j $(JOBS) -L unit $(CTEST_ARGS)

sanitize: sanitize-unit
	@cd $(ASAN_DIR) && $(SAN_ENV) ctest --output-on-failure -j 1 -L multiprocess $(CTEST_ARGS)
	@$(MAKE) --no-print-directory tsan

# TSan: the collectives, store, launcher and parameter-server tests. The kernels run on one thread
# (OMP_NUM_THREADS=1): libgomp is not instrumented, so TSan cannot see the barrier that ends an
# OpenMP region and would report every kernel's writes; the threads under test are tandem's own.
TSAN_TESTS = ^((InProcess|GlooCommunicator|GlooStore|ShmCommunicator|StoreClient|StoreServer|JobToken|CheckedCommunicator|Environment|SlurmLists|WorkerHeartbeat|Agent|AgentCommand|PsEndpoints|PsServer|WireTensor|WireStream|ShardPlan)\.|multiprocess\.(Gloo|Shm)CollectivesUnderLaunchNp2)
tsan: deps
	@cmake -S . -B $(TSAN_DIR) -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo -DTANDEM_CUDA=OFF \
		-DTANDEM_SANITIZE=thread >/dev/null
	@cmake --build $(TSAN_DIR) -j $(JOBS)
	@cd $(TSAN_DIR) && TSAN_OPTIONS="suppressions=$(CURDIR)/scripts/sanitizers/tsan.supp:halt_on_error=1:second_deadlock_stack=1" \
		OMP_NUM_THREADS=1 OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 \
		ctest --output-on-failure -j $(JOBS) -R '$(TSAN_TESTS)' $(CTEST_ARGS)

clean:
	@rm -rf $(BUILD_DIR)

# Rewrites every C++ and CUDA source as .clang-format says; ctest's format.ClangFormat checks it.
format:
	@git ls-files '*.h' '*.cc' '*.cu' '*.cuh' | xargs clang-format-14 -i
