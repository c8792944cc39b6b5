# Slipway — plain GNU Makefile. `make` builds build/slipway; `make test` runs every test.
# Options: SANITIZE=address,undefined   DEBUG=1   V=1   LISTEN=127.0.0.1:8080 (make run)
CC      ?= cc
VERSION := 0.1.0
PKGS    := libmicrohttpd jansson sqlite3 libgit2 libsodium libcrypto yaml-0.1 libarchive zlib libseccomp
CFLAGS  ?= $(if $(DEBUG),-O0 -g3,-O2 -g)
# pkg-config runs on first use (after the dependency step), once.
PKG_CFLAGS = $(eval PKG_CFLAGS := $$(shell pkg-config --cflags $(PKGS)))$(PKG_CFLAGS)
PKG_LIBS   = $(eval PKG_LIBS := $$(shell pkg-config --libs $(PKGS)))$(PKG_LIBS)
# What the build needs, kept apart from CFLAGS/LDFLAGS/LDLIBS so that `make CFLAGS=-O1` (or any
# value given on the command line, which overrides a Makefile's own +=) only changes what it names.
SW_CFLAGS  = -DSLIPWAY_VERSION=\"$(VERSION)\" -std=c17 -D_GNU_SOURCE -Wall -Wextra -Wshadow -Wformat=2 \
             -Wvla -Werror -fno-strict-aliasing -Isrc $(PKG_CFLAGS)
SW_LDFLAGS =
SW_LDLIBS  = $(PKG_LIBS) -lpthread
ifneq ($(SANITIZE),)
SW_CFLAGS  += -fsanitize=$(SANITIZE) -fno-sanitize-recover=all -fno-omit-frame-pointer
SW_LDFLAGS += -fsanitize=$(SANITIZE)
endif
DEPFLAGS = -MMD -MP

B       := build
O       := $(B)/obj$(if $(SANITIZE),-san)
# The sanitizer build is a separate binary, so both can exist side by side.
BIN     := $(B)/$(if $(SANITIZE),san/)slipway
# The launcher of app instances, beside it: libc only (src/slipway-instance.c).
LAUNCHER := $(B)/$(if $(SANITIZE),san/)slipway-instance
LAUNCHER_OBJS := $(O)/slipway-instance.o $(O)/deploy/instance.o $(O)/base/proc.o \
                 $(O)/base/strbuf.o $(O)/base/util.o
Q       := $(if $(V),,@)
SRCS    := $(sort $(wildcard src/*/*.c))
OBJS    := $(SRCS:src/%.c=$(O)/%.o)
LIBOBJS := $(filter-out $(O)/cli/%,$(OBJS))
PYTEST  := /usr/bin/python3 -m pytest

.PHONY: all deps run test unit e2e fuzz fuzz-build bench format check-format clean
all: $(BIN) $(LAUNCHER)

# The dependency step: installs missing Debian packages once per build directory.
deps: $(B)/.deps
$(B)/.deps: scripts/install-deps
	@mkdir -p $(B)
	@scripts/install-deps
	@touch $@
$(OBJS): | $(B)/.deps

$(O)/%.o: src/%.c
	@mkdir -p $(dir $@)
	@$(if $(Q),echo "  CC      $<")
	$(Q)$(CC) $(SW_CFLAGS) $(CFLAGS) $(DEPFLAGS) -c $< -o $@

$(BIN): $(OBJS)
	@mkdir -p $(dir $@)
	@$(if $(Q),echo "  LINK    $@")
	$(Q)$(CC) $(SW_LDFLAGS) $(LDFLAGS) -o $@ $(OBJS) $(SW_LDLIBS) $(LDLIBS)

$(O)/slipway-instance.o: | $(B)/.deps
$(LAUNCHER): $(LAUNCHER_OBJS)
	@mkdir -p $(dir $@)
	@$(if $(Q),echo "  LINK    $@")
	$(Q)$(CC) $(SW_LDFLAGS) $(LDFLAGS) -o $@ $(LAUNCHER_OBJS) $(LDLIBS)

# --- unit tests (Criterion): tests/unit/<module>/test_*.c, each its own binary ---
UNIT_SRCS := $(sort $(wildcard tests/unit/*/test_*.c))
UNIT_BINS := $(UNIT_SRCS:tests/unit/%.c=$(B)/unit$(if $(SANITIZE),-san)/%)
$(B)/unit$(if $(SANITIZE),-san)/%: tests/unit/%.c tests/unit/helpers.h $(LIBOBJS)
	@mkdir -p $(dir $@)
	@$(if $(Q),echo "  TEST    $@")
	$(Q)$(CC) $(SW_CFLAGS) $(CFLAGS) $(SW_LDFLAGS) $(LDFLAGS) -o $@ $< $(LIBOBJS) $(SW_LDLIBS) \
	    $(LDLIBS) -lcriterion

unit: $(UNIT_BINS)
	@set -e; for t in $(UNIT_BINS); do echo "== $$t"; $$t --jobs 2; done

e2e: $(BIN) $(LAUNCHER)
	SLIPWAY_BIN=$(abspath $(BIN)) $(PYTEST) -q tests/e2e

# --- fuzzing (clang + libFuzzer) ---
# The library sources are compiled once, with coverage and sanitizers, into their own object
# directory; each driver is compiled and linked against those objects.
FUZZ_SRCS := $(sort $(wildcard fuzz/fuzz_*.c))
FUZZ_BINS := $(FUZZ_SRCS:fuzz/%.c=$(B)/fuzz/%)
FUZZ_O    := $(B)/obj-fuzz
FUZZ_OBJS := $(patsubst src/%.c,$(FUZZ_O)/%.o,$(filter-out src/cli/%,$(SRCS)))
FUZZ_TIME ?= 10
FUZZ_CFLAGS = -std=c17 -D_GNU_SOURCE -g -O1 -Isrc -fsanitize=address,undefined \
              -fno-sanitize-recover=all $(PKG_CFLAGS)
$(FUZZ_OBJS): | $(B)/.deps
$(FUZZ_O)/%.o: src/%.c
	@mkdir -p $(dir $@)
	@$(if $(Q),echo "  CC      $@")
	$(Q)clang $(FUZZ_CFLAGS) -fsanitize=fuzzer-no-link $(DEPFLAGS) -c $< -o $@
$(B)/fuzz/%: fuzz/%.c $(FUZZ_OBJS)
	@mkdir -p $(dir $@)
	@$(if $(Q),echo "  FUZZ    $@")
	$(Q)clang $(FUZZ_CFLAGS) -fsanitize=fuzzer $(DEPFLAGS) -o $@ $< $(FUZZ_OBJS) $(SW_LDLIBS) \
	    $(LDLIBS)
fuzz-build: $(FUZZ_BINS)
fuzz: $(FUZZ_BINS)
	@set -e; for f in $(FUZZ_BINS); do n=$$(basename $$f); mkdir -p $(B)/fuzz/corpus-$$n; \
	  echo "== $$n ($(FUZZ_TIME)s)"; \
	  mkdir -p fuzz/artifacts; \
	  $$f -max_total_time=$(FUZZ_TIME) -print_final_stats=0 -artifact_prefix=fuzz/artifacts/ $(B)/fuzz/corpus-$$n fuzz/corpus/$$n 2>$(B)/fuzz/$$n.log \
	    || { tail -50 $(B)/fuzz/$$n.log; exit 1; }; \
	  grep -E '^#[0-9]+.*DONE' $(B)/fuzz/$$n.log | tail -1; done

test: $(BIN) $(LAUNCHER)
	@$(MAKE) --no-print-directory unit
	@$(MAKE) --no-print-directory fuzz
	@$(MAKE) --no-print-directory e2e

LISTEN ?= 127.0.0.1:8080
run: $(BIN) $(LAUNCHER)
	@mkdir -p var
	$(BIN) serve --data var --listen $(LISTEN)

bench: $(BIN)
	bench/run

FMT_FILES = $(wildcard src/*.c src/*/*.[ch] tests/unit/*/*.c fuzz/*.c examples/*/*.c)
format:
	clang-format -i $(FMT_FILES)
check-format:
	clang-format --dry-run --Werror $(FMT_FILES)

clean:
	rm -rf $(B)

-include $(OBJS:.o=.d) $(O)/slipway-instance.d $(FUZZ_OBJS:.o=.d) $(FUZZ_BINS:=.d)
