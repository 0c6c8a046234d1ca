# The two commands: `make demo` and `make test`. Both install what is missing first.
JOBS ?= $(shell nproc)
CMAKE_FLAGS ?=
FUZZ_SECONDS ?= 20

.PHONY: all deps build demo test unit integration asan fuzz bench clean

all: build

deps:
	@scripts/deps.sh

build: deps
	@cmake -S . -B build -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo $(CMAKE_FLAGS) >/dev/null
	@cmake --build build -j$(JOBS)

demo: build
	./build/fulcrum demo

# Unit + integration on the release build, then the whole suite again under ASan+UBSan, then a
# short libFuzzer run of every parser.
test: build
	ctest --test-dir build --output-on-failure -j$(JOBS) -L unit
	ctest --test-dir build --output-on-failure -L integration
	$(MAKE) --no-print-directory asan
	$(MAKE) --no-print-directory fuzz

unit: build
	ctest --test-dir build --output-on-failure -j$(JOBS) -L unit

integration: build
	ctest --test-dir build --output-on-failure -L integration

asan: deps
	@cmake -S . -B build-asan -G Ninja -DCMAKE_BUILD_TYPE=Debug -DFULCRUM_SANITIZE=ON >/dev/null
	@cmake --build build-asan -j$(JOBS)
	ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
	  ctest --test-dir build-asan --output-on-failure -j$(JOBS) -L unit
	ASAN_OPTIONS=detect_leaks=1 UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
	  ctest --test-dir build-asan --output-on-failure -L integration

fuzz: deps
	@CC=clang CXX=clang++ cmake -S . -B build-fuzz -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo \
	  -DFULCRUM_FUZZ=ON -DFULCRUM_TESTS=OFF >/dev/null
	@cmake --build build-fuzz -j$(JOBS)
	FUZZ_SECONDS=$(FUZZ_SECONDS) scripts/fuzz.sh build-fuzz

bench: build
	MODE=$${MODE:-all} bench/run.sh
	bench/dns.sh
	bench/h2.sh

clean:
	rm -rf build build-asan build-fuzz
