# convd — one non-recursive Makefile. Products go under $(BUILD) (default build/;
# the sanitizer pass uses build/san). User CFLAGS go last so `make CFLAGS=...` wins.
#
#   make            install missing build packages, build build/convd and build/libcvd.a
#   make run        install missing packages, build, start the daemon (config/convd.conf)
#   make test       install, build, run every test: plain build, then ASan+UBSan build
#   make test SANITIZE=address,undefined   only the instrumented pass
#   make bench      core benchmark, then the HTTP benchmark
#   make bench-compare   the core against PyTorch 1.13 in the same run (installs python3-torch)
#   make install    PREFIX=/usr/local DESTDIR=
#
# Source lists are globbed per folder: every .c file of core/ and server/ goes into its
# library (core/ has one public header, cvd.h, and *_impl.h templates that are included,
# not compiled; a server module is one header with one or more .c files), and every test
# file named test_*.c is its own binary.

# Builds use every core. Only the top-level make sets -j: GNU make 4.3 does not show a
# sub-make the -j it inherits while parsing, so a sub-make setting it again would leave the
# shared job slots and sub-makes run side by side (ci-build) would take nproc jobs each.
# `make -j1` or MAKEFLAGS=-j1 in the environment serialises them again.
ifeq ($(MAKELEVEL)$(filter -j%,$(MAKEFLAGS)),0)
MAKEFLAGS += -j$(shell nproc 2>/dev/null || echo 2)
endif

PKG_CONFIG ?= pkg-config
PREFIX     ?= /usr/local
BUILD      ?= build
OPT        ?= -O2
CC         ?= cc
# Debian's python3, the one python3-torch installs into (not a pyenv one earlier in PATH)
TORCH_PYTHON ?= /usr/bin/python3

WARN = -Wall -Wextra -Werror -Wshadow -Wstrict-prototypes -Wwrite-strings -Wvla \
       -Werror=implicit-function-declaration -Wno-missing-field-initializers
ALL_CFLAGS = -std=c11 -D_GNU_SOURCE $(OPT) -g -fno-strict-aliasing $(WARN) $(CPPFLAGS) $(CFLAGS)
ALL_LDFLAGS = $(LDFLAGS)

ifdef SANITIZE
ALL_CFLAGS  += -fsanitize=$(SANITIZE) -fno-sanitize-recover=all -fno-omit-frame-pointer
ALL_LDFLAGS += -fsanitize=$(SANITIZE)
endif

pc_cflags = $(shell $(PKG_CONFIG) --cflags $(1) 2>/dev/null)
pc_libs   = $(shell $(PKG_CONFIG) --libs $(1) 2>/dev/null || echo $(2))

BLAS_CFLAGS := $(call pc_cflags,openblas)
BLAS_LIBS   := $(call pc_libs,openblas,-lopenblas)
SRV_CFLAGS  := $(call pc_cflags,libmicrohttpd libcjson sqlite3 gnutls)
SRV_LIBS    := $(call pc_libs,libmicrohttpd libcjson sqlite3 gnutls,-lmicrohttpd -lcjson -lsqlite3 -lgnutls)
CURL_LIBS   := $(call pc_libs,libcurl,-lcurl)
CMOCKA_LIBS := $(call pc_libs,cmocka,-lcmocka)
CJSON_LIBS  := $(call pc_libs,libcjson,-lcjson)

CORE_ALL   := $(sort $(wildcard core/*.c))
SERVER_SRC := $(filter-out server/main.c,$(sort $(wildcard server/*.c)))
# The core files with SIMD kernels (those including simd.h or immintrin.h): their ISA x
# dtype instances of always_inline tiles are what an instrumented build spends its time
# on. They come first, so a parallel build starts its longest compiles first, and
# KERNEL_CFLAGS goes after the other flags for them alone. Instrumented builds take them
# at -O1, instrumented all the same: gcc's ASan+UBSan compile of core/direct.c took 35 s
# of CPU at -O1 and 109 s at -O2. The plain build, which is what ships, stays -O2.
KERNEL_SRC := $(shell grep -lE '^\#include [<"](simd|immintrin)\.h[>"]' $(CORE_ALL) /dev/null)
ifdef SANITIZE
KERNEL_CFLAGS ?= -O1
endif
CORE_SRC   := $(KERNEL_SRC) $(filter-out $(KERNEL_SRC),$(CORE_ALL))
CORE_OBJ   := $(CORE_SRC:%.c=$(BUILD)/%.o)
# docs/openapi.yaml is compiled in as a C string (server/api_openapi.h serves it)
GEN_OBJ    := $(BUILD)/gen/openapi_yaml.o
SERVER_OBJ := $(SERVER_SRC:%.c=$(BUILD)/%.o) $(GEN_OBJ)

LIBCVD    := $(BUILD)/libcvd.a
LIBSERVER := $(BUILD)/libconvd_server.a
CONVD     := $(BUILD)/convd

# Tests: tests/<suite>/test_*.c are binaries; the suite's other .c files are linked into
# each binary of that suite.
define suite
$(1)_MAIN := $$(sort $$(wildcard tests/$(1)/test_*.c))
$(1)_HELP := $$(filter-out $$($(1)_MAIN),$$(sort $$(wildcard tests/$(1)/*.c)))
$(1)_BINS := $$($(1)_MAIN:%.c=$(BUILD)/%)
$(1)_HOBJ := $$($(1)_HELP:%.c=$(BUILD)/%.o)
endef
$(eval $(call suite,core))
$(eval $(call suite,server))
$(eval $(call suite,integration))
TEST_BINS := $(core_BINS) $(server_BINS) $(integration_BINS)
# The plain-loop references (tests/core/ref_*.c) compute the expected answers, one thread on
# the test's own buffers, where there is no race to find: a TSan build leaves them
# uninstrumented (instrumented, they were four fifths of test_conv_random's 150 s).
ifeq ($(SANITIZE),thread)
$(BUILD)/tests/core/ref_%.o: ALL_CFLAGS += -fno-sanitize=thread
endif
# The allocation-failure shim the integration tests preload into the daemon
# (tests/shim/failalloc.h); built without sanitizers, it forwards to theirs.
FAILALLOC := $(BUILD)/tests/shim/failalloc.so

BENCH_BIN   := $(BUILD)/bench/bench_core
BENCH_CODEC := $(BUILD)/bench/bench_codec
BENCH_PEAK  := $(BUILD)/bench/bench_peak
BENCH_LOOP  := $(BUILD)/bench/bench_loopback

.PHONY: all deps deps-run deps-test run test test-build test-pass test-san check bench bench-peak bench-core bench-compare \
        bench-http install uninstall clean format lint fuzz valgrind soak tsan docker-check

# The default target installs what the build needs first, so a fresh machine gets
# packages (or a message naming them) rather than a missing header.
all: deps
	@$(MAKE) --no-print-directory $(CONVD) $(LIBCVD)

deps:
	@scripts/deps.sh build

deps-run:
	@scripts/deps.sh run

deps-test:
	@scripts/deps.sh test

$(BUILD)/core/%.o: core/%.c
	@mkdir -p $(@D)
	$(CC) $(ALL_CFLAGS) $(BLAS_CFLAGS) $(if $(filter $<,$(KERNEL_SRC)),$(KERNEL_CFLAGS)) -MMD -MP -c $< -o $@

$(BUILD)/server/%.o: server/%.c
	@mkdir -p $(@D)
	$(CC) $(ALL_CFLAGS) $(SRV_CFLAGS) -pthread -MMD -MP -c $< -o $@

$(BUILD)/gen/openapi_yaml.c: docs/openapi.yaml scripts/embed-text.sh
	@mkdir -p $(@D)
	scripts/embed-text.sh api_openapi_yaml $< >$@.tmp && mv $@.tmp $@

$(BUILD)/gen/%.o: $(BUILD)/gen/%.c
	$(CC) $(ALL_CFLAGS) -c $< -o $@

$(BUILD)/tests/%.o: tests/%.c
	@mkdir -p $(@D)
	$(CC) $(ALL_CFLAGS) $(SRV_CFLAGS) $(BLAS_CFLAGS) -pthread -MMD -MP -c $< -o $@

$(BUILD)/bench/%.o: bench/%.c
	@mkdir -p $(@D)
	$(CC) $(ALL_CFLAGS) $(BLAS_CFLAGS) $(SRV_CFLAGS) -MMD -MP -c $< -o $@

$(LIBCVD): $(CORE_OBJ)
	@mkdir -p $(@D)
	rm -f $@ && ar rcs $@ $^

$(LIBSERVER): $(SERVER_OBJ)
	@mkdir -p $(@D)
	rm -f $@ && ar rcs $@ $^

$(CONVD): $(BUILD)/server/main.o $(LIBSERVER) $(LIBCVD)
	$(CC) $(ALL_LDFLAGS) -pthread -o $@ $^ $(SRV_LIBS) $(BLAS_LIBS) -lm

$(core_BINS): $(BUILD)/tests/core/%: $(BUILD)/tests/core/%.o $(core_HOBJ) $(LIBCVD)
	$(CC) $(ALL_LDFLAGS) -pthread -o $@ $^ $(CMOCKA_LIBS) $(CJSON_LIBS) $(BLAS_LIBS) -lm

$(server_BINS): $(BUILD)/tests/server/%: $(BUILD)/tests/server/%.o $(server_HOBJ) $(LIBSERVER) $(LIBCVD)
	$(CC) $(ALL_LDFLAGS) -pthread -o $@ $^ $(CMOCKA_LIBS) $(SRV_LIBS) $(BLAS_LIBS) -lm

$(integration_BINS): $(BUILD)/tests/integration/%: $(BUILD)/tests/integration/%.o $(integration_HOBJ)
	$(CC) $(ALL_LDFLAGS) -pthread -o $@ $^ $(CMOCKA_LIBS) $(CURL_LIBS) $(CJSON_LIBS) -lm

$(FAILALLOC): tests/shim/failalloc.c tests/shim/failalloc.h
	@mkdir -p $(@D)
	$(CC) -std=c11 -D_GNU_SOURCE -O2 -g $(WARN) -fPIC -shared -o $@ $< -ldl

$(BENCH_BIN): $(BUILD)/bench/bench_core.o $(LIBCVD)
	$(CC) $(ALL_LDFLAGS) -pthread -o $@ $^ $(BLAS_LIBS) -lm

$(BENCH_PEAK): $(BUILD)/bench/bench_peak.o $(LIBCVD)
	$(CC) $(ALL_LDFLAGS) -pthread -o $@ $^ $(BLAS_LIBS) -lm

$(BENCH_LOOP): $(BUILD)/bench/bench_loopback.o
	$(CC) $(ALL_LDFLAGS) -pthread -o $@ $^

$(BENCH_CODEC): $(BUILD)/bench/bench_codec.o $(LIBSERVER) $(LIBCVD)
	$(CC) $(ALL_LDFLAGS) -pthread -o $@ $^ $(SRV_LIBS) $(BLAS_LIBS) -lm

run: deps-run
	@$(MAKE) --no-print-directory $(CONVD)
	exec $(CONVD) --config config/convd.conf

test-build: $(LIBCVD) $(CONVD) $(TEST_BINS) $(FAILALLOC)

# One pass: build and run every test binary of $(BUILD).
test-pass: test-build
	@tests/run.sh $(BUILD)

# The configurations test, fuzz and tsan build, one sub-make each. Named together as
# goals of one make they build side by side in the shared job slots, so one configuration's
# long compile (a kernel file) overlaps the others' many small ones.
build-plain:
	@$(MAKE) --no-print-directory test-build
build-san:
	@$(MAKE) --no-print-directory BUILD=build/san SANITIZE=address,undefined test-build

# `make test` = both passes and one summary. With SANITIZE set, only that pass.
ifdef SANITIZE
test: deps-test
	@$(MAKE) --no-print-directory BUILD=build/san SANITIZE=$(SANITIZE) test-build
	@tests/run.sh build/san
else
test: deps-test
	@$(MAKE) --no-print-directory build-san build-plain
	@tests/run.sh build build/san
endif

# Everything .ci/run builds (test, fuzz, tsan), at once; then its steps only run.
ci-build:
	@scripts/deps.sh fuzz
	@$(MAKE) --no-print-directory build-san fuzz-bins tsan-bins build-plain

check: test

bench: bench-peak bench-core bench-http

# The machine's ceilings, to read bench-core against (bench/bench_peak.c).
bench-peak: deps
	@$(MAKE) --no-print-directory $(BENCH_PEAK)
	@$(BENCH_PEAK)

bench-core: deps
	@$(MAKE) --no-print-directory $(BENCH_BIN)
	@$(BENCH_BIN)

# convd's core against PyTorch 1.13 (Debian's python3-torch) in the same run, with the
# issue's targets as ratios (bench/compare.py). Not part of `make bench`: torch is a
# large install. Five alternating rounds by default: on a VM whose whole minutes can run
# at 55-60 % speed, three left one side's best median in a slow minute too often.
COMPARE_ROUNDS ?= 5
bench-compare: deps
	@scripts/deps.sh torch
	@$(MAKE) --no-print-directory $(BENCH_BIN) $(BENCH_PEAK)
	@$(TORCH_PYTHON) bench/compare.py $(BENCH_BIN) $(COMPARE_ROUNDS) $(BENCH_PEAK)

# EDGE_BASELINE=path/to/another/convd runs bench/edge.sh's figures for it in the same run.
bench-http:
	@scripts/deps.sh bench
	@$(MAKE) --no-print-directory $(CONVD) $(BENCH_CODEC) $(BENCH_BIN) $(BENCH_LOOP)
	@$(BENCH_CODEC)
	@bench/http.sh $(CONVD) $(BENCH_BIN) $(BENCH_LOOP)
	@bench/edge.sh $(CONVD) $(EDGE_BASELINE)
	@bench/durable.sh $(CONVD)
	@$(TORCH_PYTHON) bench/client.py $(CONVD)

install: $(CONVD)
	install -d $(DESTDIR)$(PREFIX)/bin $(DESTDIR)$(PREFIX)/etc/convd $(DESTDIR)$(PREFIX)/share/man/man1
	install -m 755 $(CONVD) $(DESTDIR)$(PREFIX)/bin/convd
	install -m 644 config/convd.conf $(DESTDIR)$(PREFIX)/etc/convd/convd.conf
	install -m 644 docs/convd.1 $(DESTDIR)$(PREFIX)/share/man/man1/convd.1

uninstall:
	rm -f $(DESTDIR)$(PREFIX)/bin/convd $(DESTDIR)$(PREFIX)/etc/convd/convd.conf \
	      $(DESTDIR)$(PREFIX)/share/man/man1/convd.1

# Builds the image with podman or docker, runs it, probes /healthz and runs the notebook
# flow against the container (scripts/docker-verify.sh).
docker-check:
	scripts/docker-verify.sh

format:
	clang-format -i core/*.[ch] server/*.[ch] tests/*/*.[ch] bench/*.c

lint:
	cppcheck --quiet --error-exitcode=1 --enable=warning,performance,portability \
	    --inline-suppr --suppress=missingIncludeSystem -D__GNUC__ core server
	printf '%s\n' core/*.c server/*.c | xargs -P $$(nproc) -n 4 sh -c \
	    'clang-tidy --quiet "$$@" -- -std=c11 -D_GNU_SOURCE $(SRV_CFLAGS)' clang-tidy

clean:
	rm -rf build

# --- hardening (fuzz/README.md): fuzzers, valgrind, ThreadSanitizer, soak ---------------
FUZZ_CC      ?= clang
FUZZ_SECONDS ?= 60
FUZZ_BUILD   := build/fuzz
FUZZ_TARGETS := fuzz_codec fuzz_layer fuzz_request
SOAK_MINUTES ?= 5

# The kernel files (KERNEL_SRC) of the fuzz build: -O0, instrumented all the same. clang
# 14 compiles core/direct.c with coverage, ASan and UBSan in about 10 s of CPU at -O0 and
# in over 200 s at -O1 or -O2 (its always-inline tile variants), which was the whole CI's
# long pole. The price: one layer with a huge kernel can run for tens of seconds at -O0,
# so fuzz/run.sh gives each input FUZZ_TIMEOUT seconds (fuzz_layer bounds the work).
FUZZ_KERNEL_CFLAGS ?= -O0

# Libraries instrumented with fuzzer-no-link + ASan + UBSan, then one binary per target;
# `fuzz` replays fuzz/regressions and runs each target FUZZ_SECONDS.
fuzz-build:
	@scripts/deps.sh fuzz
	@$(MAKE) --no-print-directory fuzz-bins

fuzz-bins:
	@$(MAKE) --no-print-directory BUILD=$(FUZZ_BUILD) CC=$(FUZZ_CC) \
	    SANITIZE=fuzzer-no-link,address,undefined KERNEL_CFLAGS="$(FUZZ_KERNEL_CFLAGS)" \
	    $(FUZZ_BUILD)/libcvd.a $(FUZZ_BUILD)/libconvd_server.a
	@for t in $(FUZZ_TARGETS); do \
	    extra=; [ $$t = fuzz_layer ] && extra=tests/core/ref_conv.c; \
	    echo "$(FUZZ_CC) -o $(FUZZ_BUILD)/$$t fuzz/$$t.c $$extra"; \
	    $(FUZZ_CC) -std=c11 -D_GNU_SOURCE -O1 -g $(WARN) $(SRV_CFLAGS) $(BLAS_CFLAGS) \
	        -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=all -fno-omit-frame-pointer \
	        -o $(FUZZ_BUILD)/$$t fuzz/$$t.c $$extra $(FUZZ_BUILD)/libconvd_server.a \
	        $(FUZZ_BUILD)/libcvd.a $(SRV_LIBS) $(BLAS_LIBS) -lm -pthread || exit 1; \
	done

fuzz: fuzz-build
	@fuzz/run.sh $(FUZZ_BUILD) $(FUZZ_SECONDS) $(FUZZ_TARGETS)

# The integration suite against the daemon under memcheck (scripts/valgrind-convd.sh).
valgrind:
	@scripts/deps.sh fuzz
	@$(MAKE) --no-print-directory BUILD=build/valgrind $(CONVD:$(BUILD)/%=build/valgrind/%) \
	    $(integration_BINS:$(BUILD)/%=build/valgrind/%)
	@scripts/valgrind-convd.sh --run-suite build/valgrind

# Everything with -fsanitize=thread; the concurrency-relevant tests (scripts/tsan.sh).
tsan:
	@scripts/deps.sh test
	@$(MAKE) --no-print-directory tsan-bins
	@scripts/tsan.sh build/tsan

# Only what scripts/tsan.sh runs: the daemon and its tests.
tsan-bins:
	@$(MAKE) --no-print-directory BUILD=build/tsan SANITIZE=thread build/tsan/libcvd.a \
	    build/tsan/convd $(addprefix build/tsan/,$(shell scripts/tsan.sh --list))
	@$(MAKE) --no-print-directory BUILD=build/soak build/soak/soak

# Slow clients and limits first, then mixed traffic for SOAK_MINUTES (tests/soak/*.c).
soak:
	@scripts/deps.sh test
	@$(MAKE) --no-print-directory BUILD=build/soak $(CONVD:$(BUILD)/%=build/soak/%) \
	    build/soak/soak build/soak/slowloris
	@build/soak/slowloris build/soak/convd
	@build/soak/soak build/soak/convd $(SOAK_MINUTES) tests/fixtures

SOAK_DEPS := tests/soak/soakutil.c tests/integration/client.c tests/integration/daemon.c
build/soak/soak build/soak/slowloris: build/soak/%: tests/soak/%.c $(SOAK_DEPS) tests/soak/soakutil.h
	@mkdir -p $(@D)
	$(CC) $(ALL_CFLAGS) $(SRV_CFLAGS) -pthread -o $@ $< $(SOAK_DEPS) $(CURL_LIBS) $(CJSON_LIBS) -lm

.PHONY: fuzz-build fuzz-bins tsan-bins build-plain build-san ci-build

-include $(shell find $(BUILD) -name '*.d' 2>/dev/null)
