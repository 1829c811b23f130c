# duet — a thin wrapper around CMake. The two commands a newcomer types:
#   make demo    install what is missing, build, and run two devices side by side
#   make test    install what is missing, build, and run the whole suite through ctest
# Also: make bench | asan | fuzz | soak | install PREFIX=... | clean

BUILD   ?= build
PREFIX  ?= /usr/local
JOBS    ?= $(shell nproc 2>/dev/null || echo 2)
CMAKE   ?= cmake
CTEST_ARGS ?=

.PHONY: all deps build demo test bench asan fuzz soak install clean lint

all: build

deps:
	@sh tools/deps.sh

build: deps
	@$(CMAKE) -S . -B $(BUILD) -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
	@$(CMAKE) --build $(BUILD) -j $(JOBS)

demo: build
	@bash tools/demo.sh $(BUILD)/bin/duet

test: build
	@cd $(BUILD) && ctest --output-on-failure -j $(JOBS) $(CTEST_ARGS)

bench: build
	@sh tools/deps.sh bench || echo "bench: c-toxcore not installable here; skipping the peer run" >&2
	@bash bench/run.sh $(BUILD)

# AddressSanitizer + UndefinedBehaviorSanitizer build and the whole suite.
asan: deps
	@$(CMAKE) -S . -B $(BUILD)-asan -DCMAKE_BUILD_TYPE=Debug -DDUET_SANITIZE=ON \
	    -DDUET_BENCH=OFF >/dev/null
	@$(CMAKE) --build $(BUILD)-asan -j $(JOBS)
	@cd $(BUILD)-asan && ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 \
	    UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
	    ctest --output-on-failure -j $(JOBS) $(CTEST_ARGS)

# libFuzzer targets (clang), a bounded run of each from its corpus.
FUZZ_SECONDS ?= 30
fuzz: deps
	@CC=clang $(CMAKE) -S . -B $(BUILD)-fuzz -DCMAKE_BUILD_TYPE=Debug -DDUET_FUZZ=ON \
	    -DDUET_BENCH=OFF >/dev/null
	@$(CMAKE) --build $(BUILD)-fuzz -j $(JOBS) --target \
	    $(patsubst tests/fuzz/%.c,%,$(wildcard tests/fuzz/fuzz_*.c))
	@bash tools/fuzz.sh $(BUILD)-fuzz $(FUZZ_SECONDS)

# The sync simulation over many seeds (ctest runs a few thousand).
SOAK_SEEDS ?= 1000000
SOAK_FIRST ?= 100000
soak: build
	@$(BUILD)/tests/test_sim --first $(SOAK_FIRST) --count $(SOAK_SEEDS)

# clang-tidy with .clang-tidy over core/ net/ cli/, and the house rules of tools/checksrc.
lint: build
	@sh tools/checksrc
	@clang-tidy -p $(BUILD) --quiet core/*.c net/*.c cli/*.c 2>/dev/null | grep -E 'warning|error' || true

install: build
	@$(CMAKE) --install $(BUILD) --prefix $(PREFIX)

clean:
	rm -rf $(BUILD) $(BUILD)-asan $(BUILD)-fuzz
