# llsmtp - build, test, fuzz, bench. GNU make.
# make            static + shared library in build/
# make unit       cmocka unit and transcript suites only (after every edit)
# make test       cmocka suite (runs `make deps` itself when root and missing)
# make test SANITIZE=1   the same under ASan + UBSan
# make valgrind   the suite under valgrind --error-exitcode=1
# make fuzz       libFuzzer targets in build/fuzz/ (clang)
# make bench      engine benchmark (bench/engine.c), builds bench/smtp-load;
#                 bench/compare.sh then compares smtpd with smtp-sink
# make run        example server on 127.0.0.1:2525
# make check-cxx  every example listed compiles as C++17, warning-free
# make abi-check  the shared library's ABI against abi/libllsmtp.abi (libabigail)
# make doc-check  the README checked like code: its C blocks compile as C99
#                 and C++17, its figures are what the suites print

# The version lives in include/llsmtp.h.
llsmtp_version = $(shell sed -n 's/^\#define LLSMTP_VERSION_$(1) \([0-9]*\)$$/\1/p' include/llsmtp.h)
MAJOR := $(call llsmtp_version,MAJOR)
MINOR := $(call llsmtp_version,MINOR)
PATCH := $(call llsmtp_version,PATCH)
VERSION := $(MAJOR).$(MINOR).$(PATCH)

CC ?= cc
AR ?= ar
CLANG ?= clang
PKG_CONFIG ?= pkg-config
BUILD ?= build

WARN := -std=c99 -Wall -Wextra -Wpedantic -Wshadow -Wconversion \
        -Wstrict-prototypes -Wmissing-prototypes -Wcast-qual -Werror
OPT ?= -O2 -g
CFLAGS ?=
CPPFLAGS ?=
LDFLAGS ?=

ifeq ($(SANITIZE),1)
SANFLAGS := -fsanitize=address,undefined -fno-omit-frame-pointer \
            -fno-sanitize-recover=all
BUILD := build/san
endif

# The library's files: lib/modules.txt, which tools/amalgamate.sh reads too.
LIB_FILES := $(shell sed 's/\#.*//' lib/modules.txt)
LIB_SRCS := $(filter %.c,$(LIB_FILES))
LIB_HDRS := include/llsmtp.h $(filter %.h,$(LIB_FILES))

ALL_CFLAGS := $(WARN) $(OPT) $(SANFLAGS) -Iinclude -Ilib $(CFLAGS)

# AMALG=1: the library is the vendored pair, compiled as one file.
ifeq ($(AMALG),1)
LIB_OBJS := $(BUILD)/obj/llsmtp.o
PIC_OBJS := $(BUILD)/pic/llsmtp.o
AMALG_DIR := build/amalgamation
$(AMALG_DIR)/llsmtp.c: $(LIB_SRCS) $(LIB_HDRS) lib/modules.txt tools/amalgamate.sh
	sh tools/amalgamate.sh $(AMALG_DIR)
$(BUILD)/obj/llsmtp.o: $(AMALG_DIR)/llsmtp.c
	@mkdir -p $(dir $@)
	$(CC) $(CPPFLAGS) $(WARN) $(OPT) $(SANFLAGS) -I$(AMALG_DIR) $(CFLAGS) \
	    -DLLSMTP_TEST_INTERNALS -c $< -o $@
$(BUILD)/pic/llsmtp.o: $(AMALG_DIR)/llsmtp.c
	@mkdir -p $(dir $@)
	$(CC) $(CPPFLAGS) $(WARN) $(OPT) $(SANFLAGS) -I$(AMALG_DIR) $(CFLAGS) \
	    -DLLSMTP_BUILDING -fPIC -fvisibility=hidden -c $< -o $@
else
LIB_OBJS := $(LIB_SRCS:lib/%.c=$(BUILD)/obj/%.o)
PIC_OBJS := $(LIB_SRCS:lib/%.c=$(BUILD)/pic/%.o)
endif

.PHONY: all static shared test unit check valgrind fuzz fuzz-run fuzz-smoke \
        fuzz-regress bench examples run deps clean amalgamation \
        test-amalgamation install uninstall check-symbols check-switches \
        lint format format-check coverage check-builds test-install \
        abi-tools abi-lib abi-dump abi-baseline abi-check abi-selftest \
        check-cxx doc-check

all: static shared examples

static: $(BUILD)/libllsmtp.a
shared: $(BUILD)/libllsmtp.so

$(BUILD)/obj/%.o: lib/%.c $(LIB_HDRS)
	@mkdir -p $(dir $@)
	$(CC) $(CPPFLAGS) $(ALL_CFLAGS) -DLLSMTP_BUILDING -c $< -o $@

$(BUILD)/pic/%.o: lib/%.c $(LIB_HDRS)
	@mkdir -p $(dir $@)
	$(CC) $(CPPFLAGS) $(ALL_CFLAGS) -DLLSMTP_BUILDING -fPIC \
	    -fvisibility=hidden -c $< -o $@

$(BUILD)/libllsmtp.a: $(LIB_OBJS)
	$(AR) rcs $@ $^

# The soname's major is LLSMTP_VERSION_MAJOR; every exported function is
# versioned LLSMTP_1.0 by lib/llsmtp.map (a linker version script).
LLSMTP_MAP ?= lib/llsmtp.map
SHARED_LDFLAGS = -shared -Wl,-soname,libllsmtp.so.$(MAJOR) \
                 -Wl,--version-script,$(LLSMTP_MAP)

$(BUILD)/libllsmtp.so: $(PIC_OBJS) $(LLSMTP_MAP)
	$(CC) $(ALL_CFLAGS) $(SHARED_LDFLAGS) $(LDFLAGS) \
	    -o $(BUILD)/libllsmtp.so.$(VERSION) $(PIC_OBJS)
	ln -sf libllsmtp.so.$(VERSION) $(BUILD)/libllsmtp.so.$(MAJOR)
	ln -sf libllsmtp.so.$(VERSION) $@

# ---- tests ---------------------------------------------------------------

TEST_NAMES := test_reply test_path test_proxy test_server test_transcripts test_data test_mx test_dns test_relay test_auth test_client test_overread test_trust test_log
TEST_BINS := $(TEST_NAMES:%=$(BUILD)/tests/%)
FUZZ_TARGETS := fuzz_server fuzz_model fuzz_proxy fuzz_path fuzz_dns fuzz_mx fuzz_relay fuzz_base64 fuzz_sasl fuzz_client
REPLAY_BINS := $(FUZZ_TARGETS:%=$(BUILD)/tests/replay_%)
TEST_CFLAGS = $(WARN) -D_POSIX_C_SOURCE=200809L -Wno-missing-prototypes $(OPT) $(SANFLAGS) -Iinclude \
              -Ilib $(CFLAGS) $(shell $(PKG_CONFIG) --cflags cmocka 2>/dev/null)
TEST_LIBS = $(shell $(PKG_CONFIG) --libs cmocka 2>/dev/null)

# tests/harness.c: the recording host every suite links (tests/harness.h).
$(BUILD)/tests/harness.o: tests/harness.c tests/harness.h include/llsmtp.h
	@mkdir -p $(dir $@)
	$(CC) $(CPPFLAGS) $(TEST_CFLAGS) -c $< -o $@

$(BUILD)/tests/%: tests/%.c tests/harness.h $(BUILD)/tests/harness.o \
    $(BUILD)/libllsmtp.a
	@mkdir -p $(dir $@)
	$(CC) $(CPPFLAGS) $(TEST_CFLAGS) $< $(BUILD)/tests/harness.o -o $@ \
	    $(BUILD)/libllsmtp.a $(LDFLAGS) $(TEST_LIBS)

# test_log includes smtpd's log.c whole (its formatter's static parts).
$(BUILD)/tests/test_log: examples/smtpd/log.c examples/smtpd/log.h

# Installs what the tests need on Debian/Ubuntu (root, or through sudo).
DEPS_PKGS := make gcc g++ libcmocka-dev pkg-config clang valgrind python3 curl \
             dnsmasq-base libssl-dev openssl swaks msmtp gcc-12-multilib gcovr \
             cppcheck clang-tidy clang-format python3-aiosmtpd haproxy \
             abigail-tools netcat-openbsd
# netcat-openbsd: nc -C, the README's walk-through by hand (no test uses it).
# HAProxy is for tests/haproxy.py, which starts private instances on
# loopback ports (haproxy -db -f <conf>); its system service is not used.
# Postfix comes for smtp-source, smtp-sink and the private instance that
# tests/delivery.py starts on a loopback port: "No configuration", and
# the system's own Postfix is never started.
deps:
	@if [ "$$(id -u)" = 0 ]; then SUDO=; else SUDO=sudo; fi; \
	$$SUDO apt-get update -qq && \
	echo "postfix postfix/main_mailer_type select No configuration" | \
	    $$SUDO debconf-set-selections && \
	DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq \
	    $(DEPS_PKGS) postfix

# `make test` installs missing packages itself when it runs as root.
check-deps:
	@missing=; \
	$(PKG_CONFIG) --exists cmocka 2>/dev/null || missing="$$missing cmocka"; \
	command -v python3 >/dev/null || missing="$$missing python3"; \
	command -v curl >/dev/null || missing="$$missing curl"; \
	command -v $(CXX) >/dev/null || missing="$$missing g++"; \
	command -v dnsmasq >/dev/null || [ -x /usr/sbin/dnsmasq ] || \
	    missing="$$missing dnsmasq"; \
	for t in openssl swaks msmtp; do \
	    command -v $$t >/dev/null || missing="$$missing $$t"; \
	done; \
	[ -x /usr/sbin/smtp-source ] || missing="$$missing smtp-source"; \
	command -v haproxy >/dev/null || [ -x /usr/sbin/haproxy ] || \
	    missing="$$missing haproxy"; \
	/usr/bin/python3 -c 'import aiosmtpd' 2>/dev/null || \
	    missing="$$missing python3-aiosmtpd"; \
	$(PKG_CONFIG) --exists openssl 2>/dev/null || missing="$$missing libssl-dev"; \
	if [ -n "$$missing" ]; then \
	    if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	        echo "missing:$$missing; running make deps"; \
	        $(MAKE) --no-print-directory deps || exit 1; \
	    else \
	        echo "missing:$$missing; run: sudo make deps"; exit 1; \
	    fi; \
	fi

test check: check-deps
	@$(MAKE) --no-print-directory test-build
	@$(MAKE) --no-print-directory test-run

test-build: $(TEST_BINS) $(REPLAY_BINS) examples check-cxx

# The loop after every edit: the cmocka unit and transcript suites only
# (no package installation, no fuzz replays, no integration tests).
unit: $(TEST_BINS)
	@fail=0; for t in $(TEST_BINS); do \
	    (cd tests && ../$$t >../$$t.log 2>&1) || \
	        { fail=1; cat $$t.log; echo "FAILED: $$t"; }; \
	done; \
	[ $$fail = 0 ] && echo "unit: $(words $(TEST_BINS)) suites passed"; \
	exit $$fail

# The README checked like code (tools/doc-check says how): every ```c block
# compiles and links as C99 and as C++17 without a warning (a fragment,
# marked so, inside a standard main), a block shown as examples/hello.c
# is that file, and every figure marked <!-- figure: KEY --> (session
# sizes, test counts) equals what the suites print, which it runs.
# DOC_CHECK_FLAGS=--require-all: a figure this machine cannot check (the
# i386, s390x and win64 sizes without make cross-deps, coverage without
# gcovr, object sizes not with gcc 12) fails instead of being noted (CI).
DOC_CHECK_FLAGS ?=
doc-check: $(TEST_BINS) $(REPLAY_BINS)
	python3 tools/doc-check --build $(BUILD) --suites "$(TEST_NAMES)" \
	    --skip-win64 "$(CROSS_SKIP_win64)" $(DOC_CHECK_FLAGS)

# Unit and transcript tests, the fuzz corpora replayed as plain tests,
# then the integration tests against the real example server.
test-run:
	@fail=0; for t in $(TEST_BINS); do \
	    echo "== $$t"; \
	    (cd tests && ../$$t) || fail=1; \
	done; \
	for t in $(FUZZ_TARGETS); do \
	    echo "== replay fuzz/corpus/$$t and fuzz/regressions/$$t"; \
	    $(BUILD)/tests/replay_$$t fuzz/corpus/$$t/* \
	        $$(ls -d fuzz/regressions/$$t/* 2>/dev/null) || fail=1; \
	done; \
	echo "== tests/integration.py"; \
	python3 tests/integration.py $(BUILD)/examples/smtpd || fail=1; \
	echo "== tests/delivery.py"; \
	python3 tests/delivery.py $(BUILD)/examples/smtpd || fail=1; \
	echo "== tests/haproxy.py"; \
	python3 tests/haproxy.py $(BUILD)/examples/smtpd || fail=1; \
	echo "== tests/evhost.py"; \
	python3 tests/evhost.py $(BUILD)/examples/evhost || fail=1; \
	exit $$fail

$(BUILD)/tests/replay_%: fuzz/%.c fuzz/replay_main.c $(BUILD)/libllsmtp.a
	@mkdir -p $(dir $@)
	$(CC) $(CPPFLAGS) $(TEST_CFLAGS) $< fuzz/replay_main.c -o $@ \
	    $(BUILD)/libllsmtp.a $(LDFLAGS)

VALGRIND := valgrind --error-exitcode=1 --leak-check=full -q
valgrind: check-deps
	@$(MAKE) --no-print-directory $(TEST_BINS)
	@fail=0; for t in $(TEST_BINS); do \
	    echo "== valgrind $$t"; \
	    (cd tests && $(VALGRIND) ../$$t) || fail=1; \
	done; exit $$fail

# ---- examples --------------------------------------------------------------

EX_CFLAGS = -std=c99 -D_POSIX_C_SOURCE=200809L -Wall -Wextra -Werror $(OPT) \
            $(SANFLAGS) -Iinclude $(CFLAGS)
EXAMPLES := $(BUILD)/examples/smtpd $(BUILD)/examples/hello $(BUILD)/examples/mxlookup \
            $(BUILD)/examples/smtp-send
examples: $(EXAMPLES)

# smtpd speaks STARTTLS when OpenSSL's headers are there (libssl-dev).
TLS_CFLAGS = $(shell $(PKG_CONFIG) --exists openssl 2>/dev/null && \
                 echo -DHAVE_OPENSSL $$($(PKG_CONFIG) --cflags openssl))
TLS_LIBS = $(shell $(PKG_CONFIG) --libs openssl 2>/dev/null)

# examples/evhost.c, the non-blocking host to learn from (Linux: epoll,
# timerfd), does its STARTTLS with OpenSSL: built where OpenSSL's headers
# are, like smtpd's TLS (tests/evhost.py skips without it).
EVHOST = $(if $(TLS_CFLAGS),$(BUILD)/examples/evhost)
examples: $(EVHOST)

$(BUILD)/examples/evhost: examples/evhost.c $(BUILD)/libllsmtp.a
	@mkdir -p $(dir $@)
	$(CC) $(CPPFLAGS) $(EX_CFLAGS) -Wpedantic $(TLS_CFLAGS) $< -o $@ \
	    $(BUILD)/libllsmtp.a $(LDFLAGS) $(TLS_LIBS)


# examples/smtpd/ is the server, one concern a file (smtpd.h says which);
# its route.c (DNS, MX), deliver.c (the client over a socket) and log.c
# are smtp-send's too, route.c mxlookup's. commit.c is smtpd's storage
# thread (group commit): smtpd needs -pthread.
SMTPD_DIR := examples/smtpd
SMTPD_SRCS := $(addprefix $(SMTPD_DIR)/,main.c loop.c session.c spool.c tls.c \
                log.c commit.c queue.c deliver.c \
                route.c)
SMTPD_HDRS := $(wildcard $(SMTPD_DIR)/*.h)
SEND_SRCS := examples/smtp-send.c $(addprefix $(SMTPD_DIR)/,deliver.c route.c \
               log.c)

$(BUILD)/examples/smtpd: $(SMTPD_SRCS) $(SMTPD_HDRS) $(BUILD)/libllsmtp.a
	@mkdir -p $(dir $@)
	$(CC) $(CPPFLAGS) $(EX_CFLAGS) $(TLS_CFLAGS) -pthread $(SMTPD_SRCS) \
	    -o $@ $(BUILD)/libllsmtp.a $(LDFLAGS) $(if $(TLS_CFLAGS),$(TLS_LIBS))

$(BUILD)/examples/smtp-send: $(SEND_SRCS) $(SMTPD_HDRS) $(BUILD)/libllsmtp.a
	@mkdir -p $(dir $@)
	$(CC) $(CPPFLAGS) $(EX_CFLAGS) $(TLS_CFLAGS) $(SEND_SRCS) -o $@ \
	    $(BUILD)/libllsmtp.a $(LDFLAGS) $(if $(TLS_CFLAGS),$(TLS_LIBS))

$(BUILD)/examples/mxlookup: examples/mxlookup.c $(SMTPD_DIR)/route.c \
    $(SMTPD_DIR)/route.h $(BUILD)/libllsmtp.a
	@mkdir -p $(dir $@)
	$(CC) $(CPPFLAGS) $(EX_CFLAGS) $< $(SMTPD_DIR)/route.c -o $@ \
	    $(BUILD)/libllsmtp.a $(LDFLAGS)

$(BUILD)/examples/%: examples/%.c $(BUILD)/libllsmtp.a
	@mkdir -p $(dir $@)
	$(CC) $(CPPFLAGS) $(EX_CFLAGS) $< -o $@ $(BUILD)/libllsmtp.a $(LDFLAGS)

# Every example compiles as C++17 too, warning-free (a host may well be
# C++): each file syntax-checked by $(CXX), with OpenSSL (libssl-dev's
# headers) and without, as check-builds builds smtpd both ways.
CXX_EXAMPLES := $(wildcard examples/*.c) $(wildcard $(SMTPD_DIR)/*.c)
CXX_FLAGS := -x c++ -std=c++17 -Wall -Wextra -Wpedantic -Werror \
             -D_POSIX_C_SOURCE=200809L -Iinclude -fsyntax-only

# The two a host copies from, hello.c and evhost.c, are also linked as
# C++ programs against the C library (make test builds this).
CXX_LINK_FLAGS = -std=c++17 -Wall -Wextra -Wpedantic -Werror $(OPT) \
                 $(SANFLAGS) -Iinclude $(CXXFLAGS)

check-cxx: $(BUILD)/libllsmtp.a
	@for f in $(CXX_EXAMPLES); do \
	    $(CXX) $(CPPFLAGS) $(CXX_FLAGS) -DHAVE_OPENSSL $(CXXFLAGS) $$f \
	        || exit 1; \
	    case $$f in *evhost.c) continue;; esac; \
	    $(CXX) $(CPPFLAGS) $(CXX_FLAGS) $(CXXFLAGS) $$f || exit 1; \
	done
	@mkdir -p $(BUILD)/cxx
	$(CXX) $(CPPFLAGS) $(CXX_LINK_FLAGS) -x c++ examples/hello.c -x none \
	    -o $(BUILD)/cxx/hello $(BUILD)/libllsmtp.a $(LDFLAGS)
	$(if $(EVHOST),$(CXX) $(CPPFLAGS) $(CXX_LINK_FLAGS) -x c++ \
	    examples/evhost.c -x none -o $(BUILD)/cxx/evhost \
	    $(BUILD)/libllsmtp.a $(LDFLAGS) $(TLS_LIBS))
	@echo "check-cxx: $(words $(CXX_EXAMPLES)) example files compile as C++17 with $(CXX) (evhost.c needs OpenSSL), hello.c$(if $(EVHOST), and evhost.c) link as C++"

run: $(BUILD)/examples/smtpd
	$(BUILD)/examples/smtpd --listen 127.0.0.1:2525 \
	    --local-domain localhost --local-domain example.test --spool ./spool

# ---- fuzzing ---------------------------------------------------------------

FUZZ_BINS := $(FUZZ_TARGETS:%=build/fuzz/%)
FUZZ_FLAGS := -std=c99 -g -O1 -fsanitize=fuzzer,address,undefined \
              -Iinclude -Ilib
FUZZTIME ?= 30

fuzz: $(FUZZ_BINS)

build/fuzz/%: fuzz/%.c $(LIB_SRCS) $(LIB_HDRS)
	@mkdir -p $(dir $@)
	$(CLANG) $(FUZZ_FLAGS) $< $(LIB_SRCS) -o $@

# Each target for FUZZTIME seconds over its seeds (CI: 30).
fuzz-smoke: fuzz-run

# The corpora and every crash ever found, replayed without libFuzzer.
fuzz-regress: $(REPLAY_BINS)
	@for t in $(FUZZ_TARGETS); do \
	    $(BUILD)/tests/replay_$$t fuzz/corpus/$$t/* \
	        $$(ls -d fuzz/regressions/$$t/* 2>/dev/null) || exit 1; \
	done

fuzz-run: fuzz
	@for t in $(FUZZ_TARGETS); do \
	    echo "== $$t for $(FUZZTIME)s"; \
	    mkdir -p build/fuzz/corpus-$$t; \
	    build/fuzz/$$t -max_total_time=$(FUZZTIME) -dict=fuzz/smtp.dict \
	        -print_final_stats=1 build/fuzz/corpus-$$t fuzz/corpus/$$t \
	        || exit 1; \
	done

# ---- benchmarks --------------------------------------------------------------

bench: $(BUILD)/bench/engine $(BUILD)/bench/smtp-load $(BUILD)/bench/floor \
    examples
	$(BUILD)/bench/engine

# The cost floor bench/compare.sh sets smtpd beside (no library).
$(BUILD)/bench/floor: bench/floor.c
	@mkdir -p $(dir $@)
	$(CC) $(WARN) -D_POSIX_C_SOURCE=200809L -O2 -g $< -o $@

$(BUILD)/bench/smtp-load: bench/smtp-load.c $(BUILD)/libllsmtp.a
	@mkdir -p $(dir $@)
	$(CC) $(WARN) -D_POSIX_C_SOURCE=200809L -O2 -g -Iinclude $< \
	    -o $@ $(BUILD)/libllsmtp.a

$(BUILD)/bench/engine: bench/engine.c $(BUILD)/libllsmtp.a
	@mkdir -p $(dir $@)
	$(CC) -std=c99 -D_POSIX_C_SOURCE=200809L -O2 -g -Iinclude $< \
	    -o $@ $(BUILD)/libllsmtp.a

# ---- vendoring, installation -------------------------------------------------

amalgamation:
	sh tools/amalgamate.sh build/amalgamation

# The whole suite and the examples against the vendored pair.
test-amalgamation: amalgamation
	@for cc in gcc clang; do \
	    $$cc -std=c99 -Wall -Wextra -Wpedantic -Werror \
	        -c build/amalgamation/llsmtp.c -o build/amalgamation/$$cc.o \
	        || exit 1; \
	done
	@for cxx in g++ clang++; do \
	    $$cxx -x c++ -std=c++11 -Wall -Wextra -Werror \
	        -c build/amalgamation/llsmtp.c -o build/amalgamation/$$cxx.o \
	        || exit 1; \
	done
	@printf '#define LLSMTP_STATIC 1\n#include "llsmtp.c"\nint main(void) { return llsmtp_version() == LLSMTP_VERSION_NUM ? 0 : 1; }\n' \
	    > build/amalgamation/one_tu.c
	$(CC) -std=c99 -Wall -Wextra -Wno-unused-function -Werror \
	    -Ibuild/amalgamation build/amalgamation/one_tu.c \
	    -o build/amalgamation/one_tu && build/amalgamation/one_tu
	@echo "amalgamation compiles as C99 and C++11 with gcc and clang, and as one static translation unit"
	$(MAKE) --no-print-directory test AMALG=1 BUILD=build/amalg

# Each feature switch documented at the top of llsmtp.h compiles.
check-switches: amalgamation
	@for sw in LLSMTP_NO_DNS LLSMTP_NO_RELAY LLSMTP_NO_MX LLSMTP_NO_CLIENT \
	    "LLSMTP_NO_DNS -DLLSMTP_NO_RELAY -DLLSMTP_NO_MX -DLLSMTP_NO_CLIENT"; do \
	    $(CC) -std=c99 -Wall -Wextra -Wpedantic -Werror -D$$sw \
	        -c build/amalgamation/llsmtp.c -o build/amalgamation/sw.o \
	        || exit 1; \
	    for m in $(LIB_SRCS); do \
	        $(CC) $(WARN) -Iinclude -Ilib -D$$sw -c $$m -o build/sw.o \
	            || exit 1; \
	    done; \
	    echo "-D$$sw: ok"; \
	done

# Install into a temporary DESTDIR and build against it with pkg-config.
test-install:
	sh tests/install.sh

# Only llsmtp_ names leave the shared library, each with the version
# node of lib/llsmtp.map (nm lists the node itself as an "A" symbol).
check-symbols: shared
	@syms=$$(nm -D --defined-only $(BUILD)/libllsmtp.so | \
	    awk '$$2 != "A" {print $$NF}'); \
	bad=$$(echo "$$syms" | sed 's/@.*//' | grep -v '^llsmtp_' || true); \
	if [ -n "$$bad" ]; then echo "exported: $$bad"; exit 1; fi; \
	unversioned=$$(echo "$$syms" | grep -v '@@LLSMTP_1\.0$$' || true); \
	if [ -n "$$unversioned" ]; then \
	    echo "not versioned LLSMTP_1.0: $$unversioned"; exit 1; fi; \
	echo "exported symbols: $$(echo "$$syms" | wc -l), all llsmtp_*@@LLSMTP_1.0"

# ---- ABI check (libabigail: abidw, abidiff) ----------------------------------
# make abi-check     build/abi/libllsmtp.so described (abidw) and compared
#                    (abidiff) with the committed baseline abi/libllsmtp.abi;
#                    fails on any change 1.x does not allow (abi/llsmtp.suppr
#                    says what it allows, and why)
# make abi-baseline  rewrites abi/libllsmtp.abi from the current tree: at a
#                    release only (the 1.0 freeze: once the header says
#                    1.0.0), never to make abi-check pass
# make abi-dump      the current tree's ABI in build/abi/libllsmtp.abi
# make abi-selftest  shows the check fails when it should (tests/abi-selftest.sh),
#                    and that a next minor library with appended members
#                    takes a host of today's header (tests/abi-next-minor.sh)
#
# The library is built for this in build/abi with fixed flags, whatever
# CC, OPT, CFLAGS or SANITIZE say: -g for the DWARF abidw reads, and
# -fno-eliminate-unused-debug-types so that every type of the public
# header is described, used by lib/ or not. abidw keeps every type
# (--load-all-types: enums no function names are ABI too) and
# abi/public.suppr drops those not defined in include/llsmtp.h (the
# opaque sessions' layout is not ABI). No paths or line numbers in the
# description (a baseline that changes only at releases). The baseline
# is x86-64's: compare on x86-64.
ABI_BUILD ?= build/abi
ABI_BASELINE := abi/libllsmtp.abi
ABI_SUPPR := abi/llsmtp.suppr
ABI_PUBLIC := abi/public.suppr
ABI_CPPFLAGS ?=
ABI_CFLAGS ?=
ABI_LDFLAGS ?=
ABI_CC ?= gcc
ABI_OPT := -O2 -g -fno-eliminate-unused-debug-types
ABIDW_FLAGS := --load-all-types --suppressions $(ABI_PUBLIC) \
               --drop-undefined-syms --no-corpus-path --no-comp-dir-path \
               --no-show-locs --type-id-style hash
# tools/abi-diff.sh runs abidiff and decodes its exit status, a bit field:
# 1 error, 2 usage error, 4 ABIDIFF_ABI_CHANGE, 8 ABIDIFF_ABI_INCOMPATIBLE_
# CHANGE (with 4: a function or variable removed, or a type no function
# reaches changed). Whatever abi/llsmtp.suppr does not suppress sets 4 at
# least, so any non-zero status fails.
ABIDIFF = sh tools/abi-diff.sh

abi-tools:
	@command -v abidw >/dev/null && command -v abidiff >/dev/null || \
	    { echo "abi: no abidw/abidiff (apt-get install abigail-tools)"; exit 1; }

# The library as the ABI tools see it, always built by gcc (the baseline
# is gcc's DWARF; clang's describes the same types differently). The
# self-test builds variants: ABI_BUILD, ABI_CPPFLAGS (a changed header),
# ABI_CFLAGS, ABI_LDFLAGS (an extra object) and LLSMTP_MAP.
abi-lib:
	@$(MAKE) --no-print-directory shared BUILD=$(ABI_BUILD) CC=$(ABI_CC) \
	    OPT="$(ABI_OPT)" CFLAGS="$(ABI_CFLAGS)" CPPFLAGS="$(ABI_CPPFLAGS)" \
	    LDFLAGS="$(ABI_LDFLAGS)" SANITIZE= AMALG= \
	    LLSMTP_MAP=$(LLSMTP_MAP) >/dev/null

abi-dump: abi-tools abi-lib
	@abidw $(ABIDW_FLAGS) --out-file $(ABI_BUILD)/libllsmtp.abi \
	    $(ABI_BUILD)/libllsmtp.so
	@echo "abi-dump: $(ABI_BUILD)/libllsmtp.abi"

abi-baseline: abi-dump
	@mkdir -p $(dir $(ABI_BASELINE))
	cp $(ABI_BUILD)/libllsmtp.abi $(ABI_BASELINE)
	@echo "abi-baseline: $(ABI_BASELINE) is now the ABI of $(VERSION); commit it"

abi-check: abi-dump
	@$(ABIDIFF) $(ABI_BASELINE) $(ABI_BUILD)/libllsmtp.abi $(ABI_SUPPR)

abi-selftest: abi-tools
	@sh tests/abi-selftest.sh
	@sh tests/abi-next-minor.sh

PREFIX ?= /usr/local
LIBDIR ?= $(PREFIX)/lib
INCLUDEDIR ?= $(PREFIX)/include
PKGCONFIGDIR ?= $(LIBDIR)/pkgconfig
DESTDIR ?=

install: static shared
	install -d $(DESTDIR)$(INCLUDEDIR) $(DESTDIR)$(LIBDIR) \
	    $(DESTDIR)$(PKGCONFIGDIR)
	install -m 644 include/llsmtp.h $(DESTDIR)$(INCLUDEDIR)/llsmtp.h
	install -m 644 $(BUILD)/libllsmtp.a $(DESTDIR)$(LIBDIR)/libllsmtp.a
	install -m 755 $(BUILD)/libllsmtp.so.$(VERSION) \
	    $(DESTDIR)$(LIBDIR)/libllsmtp.so.$(VERSION)
	ln -sf libllsmtp.so.$(VERSION) $(DESTDIR)$(LIBDIR)/libllsmtp.so.$(MAJOR)
	ln -sf libllsmtp.so.$(VERSION) $(DESTDIR)$(LIBDIR)/libllsmtp.so
	sed -e 's|@PREFIX@|$(PREFIX)|' -e 's|@LIBDIR@|$(LIBDIR)|' \
	    -e 's|@INCLUDEDIR@|$(INCLUDEDIR)|' -e 's|@VERSION@|$(VERSION)|' \
	    pkg-config/llsmtp.pc.in > $(DESTDIR)$(PKGCONFIGDIR)/llsmtp.pc

uninstall:
	rm -f $(DESTDIR)$(INCLUDEDIR)/llsmtp.h $(DESTDIR)$(LIBDIR)/libllsmtp.a \
	    $(DESTDIR)$(LIBDIR)/libllsmtp.so.$(VERSION) \
	    $(DESTDIR)$(LIBDIR)/libllsmtp.so.$(MAJOR) \
	    $(DESTDIR)$(LIBDIR)/libllsmtp.so $(DESTDIR)$(PKGCONFIGDIR)/llsmtp.pc

# ---- quality gates -------------------------------------------------------

# clang-format (.clang-format): every C file as clang-format writes it;
# clang-tidy (.clang-tidy) and cppcheck (cppcheck.cfg.txt): zero findings.
lint: format-check
	clang-tidy --quiet $(LIB_SRCS) -- -Iinclude -Ilib -std=c99
	cppcheck --quiet --error-exitcode=1 --std=c99 --inline-suppr \
	    --enable=warning,style,performance,portability \
	    --suppressions-list=cppcheck.cfg.txt -Iinclude -Ilib lib/
	@echo "lint: no findings"

# The C files under FORMAT_DIRS (subfolders too). format-check lists the
# ones clang-format would change and fails; format rewrites them in place.
# .clang-format is tuned for clang-format 14 (Debian 12's); other versions
# may format a few lines differently (CLANG_FORMAT=clang-format-14).
# FORMAT_SKIP: folders left out (none).
CLANG_FORMAT ?= clang-format
FORMAT_DIRS := lib include tests fuzz bench examples
FORMAT_SKIP :=
FORMAT_FILES = $(sort $(filter-out $(addsuffix /%,$(FORMAT_SKIP)), \
    $(shell find $(FORMAT_DIRS) -type f -name '*.[ch]' 2>/dev/null)))

format-check:
	@command -v $(CLANG_FORMAT) >/dev/null || \
	    { echo "format-check: no $(CLANG_FORMAT) (apt-get install clang-format)"; exit 1; }
	@v=$$($(CLANG_FORMAT) --version | sed -n 's/.*version \([0-9]*\).*/\1/p'); \
	[ "$$v" = 14 ] || echo "format-check: note: clang-format $$v; .clang-format is tuned for 14"; \
	bad=; for f in $(FORMAT_FILES); do \
	    $(CLANG_FORMAT) --style=file "$$f" | cmp -s "$$f" - || bad="$$bad $$f"; \
	done; \
	if [ -n "$$bad" ]; then \
	    echo "format-check: clang-format would change these files:"; \
	    for f in $$bad; do echo "  $$f"; done; \
	    echo "run: $(CLANG_FORMAT) -i FILE... (or make format)"; exit 1; \
	fi; \
	echo "format-check: $(words $(FORMAT_FILES)) files as clang-format writes them$(if $(FORMAT_SKIP), (not yet checked: $(FORMAT_SKIP)))"

format:
	$(CLANG_FORMAT) -i $(FORMAT_FILES)

# Other builds that must stay warning-free: 32-bit (gcc-12-multilib), the
# examples without OpenSSL (the TLS cases of the integration suites skip),
# and -O3 -flto (the test suite runs on the LTO build).
check-builds:
	$(MAKE) --no-print-directory static BUILD=build/m32 CFLAGS=-m32
	$(MAKE) --no-print-directory examples BUILD=build/notls TLS_CFLAGS= \
	    TLS_LIBS=
	$(MAKE) --no-print-directory test BUILD=build/lto OPT="-O3 -flto" \
	    LDFLAGS="-flto" AR=gcc-ar

# Line and branch coverage of lib/ by the whole suite (gcovr).
coverage:
	$(MAKE) --no-print-directory test-build BUILD=build/cov \
	    OPT="-O0 -g --coverage" LDFLAGS="--coverage"
	@for t in $(TEST_NAMES); do (cd tests && ../build/cov/tests/$$t >/dev/null 2>&1) || exit 1; done
	@for t in $(FUZZ_TARGETS); do build/cov/tests/replay_$$t fuzz/corpus/$$t/* >/dev/null || exit 1; done
	@gcovr --root . --filter lib/ --txt build/cov/lines.txt build/cov/obj
	@gcovr --root . --filter lib/ --branches --txt build/cov/branches.txt build/cov/obj
	@tail -n 14 build/cov/lines.txt
	@tail -n 2 build/cov/branches.txt | sed 's/^TOTAL/TOTAL (branches)/'

clean:
	rm -rf build

# ---- cross targets ---------------------------------------------------------
# make test-cross   the cmocka suites and the fuzz-corpus replays built and
#                   run for i386 (-m32, natively), s390x (big-endian, under
#                   qemu-user) and win64 (mingw-w64, under Wine), and
#                   examples/hello driven through one dialogue on each,
#                   its replies and message compared with the host's.
# make cross-deps   installs their toolchains (root, or through sudo).
# CROSS_TARGETS=win64 runs just one. Python suites are not run there: slow
# under emulation, and they test the POSIX examples, not portability.

CROSS_TARGETS ?= i386 s390x win64
CROSS_DIR := build/cross
# pkg-config for the target, not the host: Debian's multiarch .pc files
# (libcmocka-dev:s390x) or those of the cmocka that tools/cross-cmocka.sh
# builds for the targets in CROSS_OWN_CMOCKA, in $(CROSS_DIR)/TARGET-cmocka.
CROSS_PC = PKG_CONFIG_LIBDIR=$(1):/usr/share/pkgconfig $(PKG_CONFIG)
CROSS_OWN_CMOCKA := i386 win64
CROSS_CMOCKA_PC = $(call CROSS_PC,$(abspath $(CROSS_DIR))/$(1)-cmocka/lib/pkgconfig)

# i386 needs no i386 architecture in dpkg/apt: gcc-12-multilib's -m32
# libc, and cmocka built with -m32 (libcmocka-dev:i386 brought i386
# indexes into apt-get update and Multi-Arch: same version skew with the
# host's packages).
CROSS_i386 := CC=gcc AR=ar CFLAGS=-m32 LDFLAGS=-m32 \
    PKG_CONFIG="$(call CROSS_CMOCKA_PC,i386)"
CROSS_RUN_i386 :=
CROSS_s390x := CC=s390x-linux-gnu-gcc AR=s390x-linux-gnu-ar \
    PKG_CONFIG="$(call CROSS_PC,/usr/lib/s390x-linux-gnu/pkgconfig)"
# No -L /usr/s390x-linux-gnu: the loader there (libc6-s390x-cross) would
# pick up the multiarch libc6:s390x that libcmocka0:s390x pulls in through
# /etc/ld.so.cache, a different glibc build ("stack smashing detected").
# Plain qemu-s390x runs /lib/ld64.so.1 and libc from libc6:s390x alone.
CROSS_RUN_s390x := qemu-s390x
# cmocka.h tags print_message with the printf archetype, which gcc reads
# as Microsoft's printf on mingw (no %zu); the tests use mingw's C99 stdio
# and the formats are checked by the other builds, so -Wno-format here.
CROSS_win64 := CC=x86_64-w64-mingw32-gcc AR=x86_64-w64-mingw32-ar EXE=.exe \
    CROSS_TEST_CFLAGS="-D__USE_MINGW_ANSI_STDIO=1 -Wno-format" \
    PKG_CONFIG="$(call CROSS_CMOCKA_PC,win64)"
WINE_ENV := WINEPREFIX=$(abspath $(CROSS_DIR))/wineprefix WINEDEBUG=-all \
    WINEDLLOVERRIDES="mscoree,mshtml="
CROSS_RUN_win64 := env $(WINE_ENV) wine
# Suites left out per target, and why (every other suite is pure library
# code plus stdio; test_transcripts lists its directory with _findfirst on
# Windows).
CROSS_SKIP_i386 :=
CROSS_SKIP_s390x :=
# test_overread needs mmap/mprotect guard pages and fork: POSIX only;
# test_log is smtpd's log.c (gmtime_r, getpid), as POSIX as smtpd.
CROSS_SKIP_win64 := test_overread test_log

# Any target build, not only test-cross: `make test CFLAGS=-m32
# LDFLAGS=-m32` or CC=s390x-linux-gnu-gcc ask pkg-config about the
# target's multiarch directory (cmocka, OpenSSL), not the host's. (i386
# has cmocka there only with libcmocka-dev:i386, which cross-deps no
# longer installs: make test-cross-i386 builds and uses its own.)
ifeq ($(origin PKG_CONFIG),file)
TARGET_MULTIARCH := $(shell $(CC) $(CFLAGS) -print-multiarch 2>/dev/null)
HOST_MULTIARCH := $(shell cc -print-multiarch 2>/dev/null)
ifneq ($(TARGET_MULTIARCH),)
ifneq ($(TARGET_MULTIARCH),$(HOST_MULTIARCH))
PKG_CONFIG := $(call CROSS_PC,/usr/lib/$(TARGET_MULTIARCH)/pkgconfig)
endif
endif
endif

EXE ?=
CROSS_TEST_CFLAGS ?=
TEST_CFLAGS += $(CROSS_TEST_CFLAGS)

.PHONY: test-cross cross-deps cross-build cross-run \
        test-cross-i386 test-cross-s390x test-cross-win64

test-cross: $(CROSS_TARGETS:%=test-cross-%)
	@cat $(CROSS_TARGETS:%=$(CROSS_DIR)/%/summary.txt)

# The host's hello gives the expected replies and message.
test-cross-i386 test-cross-s390x test-cross-win64: test-cross-%: \
    $(BUILD)/examples/hello
	@command -v $(word 1,$(subst CC=,,$(filter CC=%,$(CROSS_$*)))) \
	    >/dev/null || { echo "test-cross-$*: no compiler; run: make cross-deps"; exit 1; }
	@start=$$(date +%s); \
	case " $(CROSS_OWN_CMOCKA) " in *" $* "*) \
	    sh tools/cross-cmocka.sh $* $(CROSS_DIR)/$*-cmocka || exit 1;; esac; \
	$(MAKE) --no-print-directory cross-build BUILD=$(CROSS_DIR)/$* \
	    CROSS_SKIP="$(CROSS_SKIP_$*)" \
	    $(CROSS_$*) || exit 1; \
	$(MAKE) --no-print-directory cross-run BUILD=$(CROSS_DIR)/$* \
	    $(CROSS_$*) CROSS_NAME=$* CROSS_RUN="$(CROSS_RUN_$*)" \
	    CROSS_SKIP="$(CROSS_SKIP_$*)" HOST_HELLO=$(BUILD)/examples/hello; \
	rc=$$?; t=$$(( $$(date +%s) - start )); \
	sed -i "s/\$$/ ($$t s to build and run)/" $(CROSS_DIR)/$*/summary.txt; \
	exit $$rc

CROSS_BINS = $(patsubst %,$(BUILD)/tests/%$(EXE),$(filter-out $(CROSS_SKIP),$(TEST_NAMES))) \
             $(FUZZ_TARGETS:%=$(BUILD)/tests/replay_%$(EXE)) \
             $(BUILD)/examples/hello$(EXE)
cross-build: $(CROSS_BINS)

$(BUILD)/tests/%.exe: tests/%.c tests/harness.h $(BUILD)/tests/harness.o \
    $(BUILD)/libllsmtp.a
	@mkdir -p $(dir $@)
	$(CC) $(CPPFLAGS) $(TEST_CFLAGS) $< $(BUILD)/tests/harness.o -o $@ \
	    $(BUILD)/libllsmtp.a $(LDFLAGS) $(TEST_LIBS)

$(BUILD)/tests/replay_%.exe: fuzz/%.c fuzz/replay_main.c $(BUILD)/libllsmtp.a
	@mkdir -p $(dir $@)
	$(CC) $(CPPFLAGS) $(TEST_CFLAGS) $< fuzz/replay_main.c -o $@ \
	    $(BUILD)/libllsmtp.a $(LDFLAGS)

$(BUILD)/examples/hello.exe: examples/hello.c $(BUILD)/libllsmtp.a
	@mkdir -p $(dir $@)
	$(CC) $(CPPFLAGS) $(EX_CFLAGS) $< -o $@ $(BUILD)/libllsmtp.a $(LDFLAGS)

# A whole dialogue for hello: pipelined envelope, a dot-stuffed line, a
# bare LF in the body, QUIT. Replies and message must equal the host's.
CROSS_HELLO_IN := 'EHLO client.example\r\nMAIL FROM:<a@example.org>\r\nRCPT TO:<b@example.test>\r\nDATA\r\nSubject: hi\r\n\r\nhello\r\n..dot\r\nbare\nlf\r\n.\r\nNOOP\r\nQUIT\r\n'

cross-run:
	@log=$(BUILD)/test-cross.log; : > $$log; fail=0; \
	for t in $(TEST_NAMES); do \
	    case " $(CROSS_SKIP) " in *" $$t "*) \
	        echo "== $(CROSS_NAME) $$t: skipped" | tee -a $$log; continue;; esac; \
	    echo "== $(CROSS_NAME) $$t" | tee -a $$log; \
	    (cd tests && $(CROSS_RUN) ../$(BUILD)/tests/$$t$(EXE)) >>$$log 2>&1 \
	        || { fail=1; echo "FAILED: $$t" | tee -a $$log; }; \
	done; \
	inputs=0; for t in $(FUZZ_TARGETS); do \
	    echo "== $(CROSS_NAME) replay fuzz/corpus/$$t fuzz/regressions/$$t" | tee -a $$log; \
	    ls -d fuzz/corpus/$$t/* $$(ls -d fuzz/regressions/$$t/* 2>/dev/null) | \
	        xargs -n 200 $(CROSS_RUN) $(BUILD)/tests/replay_$$t$(EXE) \
	        >>$$log 2>&1 || { fail=1; echo "FAILED: replay $$t" | tee -a $$log; }; \
	done; \
	echo "== $(CROSS_NAME) hello: one dialogue, compared with the host's" | tee -a $$log; \
	printf $(CROSS_HELLO_IN) > $(BUILD)/hello.in; \
	$(HOST_HELLO) < $(BUILD)/hello.in > $(BUILD)/hello.want 2> $(BUILD)/hello.want-msg; \
	$(CROSS_RUN) $(BUILD)/examples/hello$(EXE) < $(BUILD)/hello.in \
	    > $(BUILD)/hello.got 2> $(BUILD)/hello.got-msg; \
	if cmp -s $(BUILD)/hello.want $(BUILD)/hello.got && \
	   cmp -s $(BUILD)/hello.want-msg $(BUILD)/hello.got-msg && \
	   grep -q '^221 ' $(BUILD)/hello.got; then \
	    echo "hello: $$(wc -l < $(BUILD)/hello.got) reply lines and the message identical" >> $$log; \
	else \
	    fail=1; echo "FAILED: hello (diff $(BUILD)/hello.want $(BUILD)/hello.got)" | tee -a $$log; \
	fi; \
	passed=$$(sed -n 's/.*\[  PASSED  \] \([0-9]*\) test.*/\1/p' $$log | \
	    awk '{s += $$1} END {print s + 0}'); \
	replayed=$$(sed -n 's/^replayed \([0-9]*\) inputs.*/\1/p' $$log | \
	    awk '{s += $$1} END {print s + 0}'); \
	size=$$(sed -n 's/.*session size with defaults: \([0-9]*\) bytes.*/\1/p' $$log | head -n 1); \
	{ printf '%-6s %s tests passed, %s fuzz inputs replayed, session size %s bytes%s%s\n' \
	    $(CROSS_NAME) $$passed $$replayed "$$size" \
	    "$$( [ -n '$(CROSS_SKIP)' ] && echo ', skipped: $(CROSS_SKIP)')" \
	    "$$( [ $$fail = 0 ] || echo ' -- FAILED')"; } > $(BUILD)/summary.txt; \
	grep -E '^(FAILED|\[  FAILED  \]|\[  ERROR   \])' $$log || true; \
	cat $(BUILD)/summary.txt; \
	[ $$fail = 0 ] || echo "full log: $$log"; \
	exit $$fail

# The toolchains, emulators and target cmocka builds test-cross needs, on
# Debian 12 (tools/cross-deps.sh says how): gcc-12-multilib for -m32 (not
# the gcc-multilib metapackage, which conflicts with every cross gcc),
# multiarch cmocka for s390x, qemu-user for s390x, mingw-w64 and Wine for
# win64, cmake and deb-src entries (and xz-utils to unpack it) to build
# cmocka for i386 and mingw from Debian's source package. No i386
# architecture and no :i386 package.
CROSS_DEPS_PKGS := gcc-12-multilib gcc-s390x-linux-gnu libc6-dev-s390x-cross \
                   qemu-user libcmocka-dev:s390x \
                   gcc-mingw-w64-x86-64 wine wine64 cmake xz-utils
cross-deps:
	@sh tools/cross-deps.sh $(CROSS_DEPS_PKGS)
