# quire: `make` builds build/quire; `make demo` and `make test` do everything on a fresh
# machine (they install what is missing first, see tools/deps.sh).

MAKEFLAGS += --no-print-directory
CC       ?= cc
BUILD    ?= build
SAN      ?=
OPT      ?= -O2
CFLAGS   ?= $(OPT) -g
XML_CFLAGS := $(shell pkg-config --cflags libxml-2.0 2>/dev/null || echo -I/usr/include/libxml2)
QCFLAGS  := $(CFLAGS) -std=gnu11 -Wall -Wextra -Werror -Wshadow -Wno-unused-parameter \
            -D_GNU_SOURCE -Iinclude $(XML_CFLAGS) $(SAN) -MMD -MP
LDLIBS   := -luring -lcurl -lcrypto -lz -lbz2 -ljansson -larchive \
            $(shell pkg-config --libs libxml-2.0 2>/dev/null || echo -lxml2) -lpthread
VERSION  := $(shell git describe --always --dirty 2>/dev/null || echo 0.1)

# Layers, lowest first: a layer may include its own headers and those of the layers
# below it, never above (make check-layers). cli is the program, not part of libquire.a.
LAYERS   := base pgp contents engine io
LIB_SRC  := $(foreach l,$(LAYERS),$(wildcard src/$(l)/*.c src/$(l)/*/*.c))
LIB_OBJ  := $(LIB_SRC:src/%.c=$(BUILD)/obj/%.o) $(BUILD)/obj/version.o
CLI_SRC  := $(wildcard src/cli/*.c)
CLI_OBJ  := $(CLI_SRC:src/%.c=$(BUILD)/obj/%.o)
UNIT_SRC := $(wildcard tests/unit/test_*.c)
UNIT_BIN := $(UNIT_SRC:tests/unit/%.c=$(BUILD)/tests/%)

.PHONY: all deps demo test unit helpers check-unit e2e lint check-layers format fuzz tsan asan bench clean FORCE \
	man install uninstall

all: $(BUILD)/quire

$(BUILD)/obj/%.o: src/%.c
	@mkdir -p $(dir $@)
	$(CC) $(QCFLAGS) -c -o $@ $<

# The version lives in one generated file, rewritten only when `git describe` changes: an
# incremental build never carries an old one, and a new commit recompiles this file alone.
$(BUILD)/version.c: FORCE
	@mkdir -p $(dir $@)
	@printf 'const char util_version[] = "%s";\n' '$(VERSION)' >$@.tmp
	@if cmp -s $@.tmp $@; then rm $@.tmp; else mv $@.tmp $@; fi
$(BUILD)/obj/version.o: $(BUILD)/version.c
	$(CC) $(QCFLAGS) -c -o $@ $<
FORCE:

# Made anew each time: ar would keep the objects of source files that are gone.
$(BUILD)/libquire.a: $(LIB_OBJ)
	@rm -f $@
	$(AR) rcs $@ $^

$(BUILD)/quire: $(CLI_OBJ) $(BUILD)/libquire.a
	$(CC) $(QCFLAGS) -o $@ $^ $(LDLIBS)

$(BUILD)/tests/%: tests/unit/%.c $(BUILD)/libquire.a
	@mkdir -p $(dir $@)
	$(CC) $(QCFLAGS) -Itests -o $@ $(filter %.c %.o %.a,$^) -lcmocka $(LDLIBS)
# Unit tests of cli modules (not part of libquire.a) link the objects they test.
$(BUILD)/tests/test_report: $(BUILD)/obj/cli/report.o $(BUILD)/obj/cli/report_normalize.o \
	$(BUILD)/obj/cli/report_print.o

unit: $(UNIT_BIN)

# Small programs the end-to-end tests run (tests/helpers/*.c).
HELPER_BIN := $(patsubst tests/helpers/%.c,$(BUILD)/helpers/%,$(wildcard tests/helpers/*.c))
$(BUILD)/helpers/%: tests/helpers/%.c
	@mkdir -p $(dir $@)
	$(CC) $(QCFLAGS) -o $@ $<
helpers: $(HELPER_BIN)

# Runs every unit test binary, each under a deadline (UNIT_TIMEOUT seconds, 300), and
# prints one summary line from cmocka's counts. Fixtures: tests/fuzz/corpus or
# $QUIRE_FIXTURES.
check-unit: $(UNIT_BIN) $(BUILD)/quire
	@tests/unit/run.sh $(UNIT_BIN)

deps:
	@tools/deps.sh

# The man page and the bash completion: tools/gen-docs fills docs/quire.1.scd's placeholders
# and writes the completion from the option tables (quire help --json); scdoc renders.
$(BUILD)/quire.1.scd $(BUILD)/quire.bash &: docs/quire.1.scd tools/gen-docs $(BUILD)/quire
	tools/gen-docs $(BUILD)/quire docs/quire.1.scd $(BUILD)/quire.1.scd $(BUILD)/quire.bash
$(BUILD)/quire.1: $(BUILD)/quire.1.scd
	scdoc <$< >$@.tmp && mv $@.tmp $@
man: $(BUILD)/quire.1 $(BUILD)/quire.bash

# make install [PREFIX=/usr/local] [DESTDIR=...]; uninstall removes exactly these three.
PREFIX  ?= /usr/local
INSTALLED := $(PREFIX)/bin/quire $(PREFIX)/share/man/man1/quire.1 \
	$(PREFIX)/share/bash-completion/completions/quire
install: $(BUILD)/quire man
	install -Dm755 $(BUILD)/quire $(DESTDIR)$(PREFIX)/bin/quire
	install -Dm644 $(BUILD)/quire.1 $(DESTDIR)$(PREFIX)/share/man/man1/quire.1
	install -Dm644 $(BUILD)/quire.bash $(DESTDIR)$(PREFIX)/share/bash-completion/completions/quire
uninstall:
	rm -f $(addprefix $(DESTDIR),$(INSTALLED))

# Sanitizer builds live in their own trees so they never mix with the release objects.
ASAN_VARS := BUILD=build/asan OPT=-O1 \
	SAN='-fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=all'
asan:
	$(MAKE) $(ASAN_VARS) all unit

# Under TSan: the unit tests that run threads, and the whole engine on the end-to-end
# suites that drive its threads hardest (signals and abort, the key pool at gpg's default
# S2K, the contents readers beside the loops, S3 multipart). Each list chooses; TSan runs
# everything 5-15x slower, so a suite gets twice the usual deadline.
TSAN_UNIT ?= test_mpmc test_loop
TSAN_E2E  ?= tests/e2e/test_run.sh tests/e2e/test_signals.sh tests/e2e/test_keypool.sh \
	tests/e2e/test_run_contents.sh tests/e2e/test_extract.sh tests/e2e/test_extract_s3.sh \
	tests/e2e/test_s3.sh
tsan:
	$(MAKE) BUILD=build/tsan CC=clang SAN='-fsanitize=thread' OPT=-O1 \
		$(TSAN_UNIT:%=build/tsan/tests/%) build/tsan/quire
	TSAN_OPTIONS=halt_on_error=1 UNIT_NAME=tsan tests/unit/run.sh $(TSAN_UNIT:%=build/tsan/tests/%)
	$(MAKE) helpers
	TSAN_OPTIONS=halt_on_error=1 E2E_NAME=tsan E2E_TIMEOUT=$${E2E_TIMEOUT:-600} \
		tests/e2e/run.sh build/tsan/quire $(TSAN_E2E)

FUZZ_SECONDS ?= 60
CONTENTS_FUZZ_SECONDS ?= 45
fuzz: $(BUILD)/fuzz_pgp $(BUILD)/fuzz_contents
	@mkdir -p $(BUILD)/fuzz-corpus
	$(BUILD)/fuzz_pgp -max_total_time=$(FUZZ_SECONDS) -max_len=65536 -rss_limit_mb=2048 \
		-print_final_stats=1 $(BUILD)/fuzz-corpus tests/fuzz/corpus
	@mkdir -p $(BUILD)/fuzz-contents-corpus
	tests/fuzz/mkseeds_contents $(BUILD)/fuzz-contents-seeds
	$(BUILD)/fuzz_contents -max_total_time=$(CONTENTS_FUZZ_SECONDS) -max_len=131072 \
		-rss_limit_mb=2048 -print_final_stats=1 $(BUILD)/fuzz-contents-corpus \
		$(BUILD)/fuzz-contents-seeds

# The contents harness needs only the contents layer (and base below it).
$(BUILD)/fuzz_contents: tests/fuzz/fuzz_contents.c $(wildcard src/contents/*.c src/base/*.c)
	@mkdir -p $(dir $@)
	clang -O1 -g -std=gnu11 -D_GNU_SOURCE -Iinclude $(XML_CFLAGS) -fsanitize=fuzzer,address,undefined \
		-o $@ $(filter %.c,$^) $(LDLIBS)

# The harness needs only the decryptor.
FUZZ_SRC := $(wildcard src/pgp/*.c src/base/*.c)
$(BUILD)/fuzz_pgp: tests/fuzz/fuzz_pgp.c $(FUZZ_SRC)
	@mkdir -p $(dir $@)
	clang -O1 -g -std=gnu11 -D_GNU_SOURCE -Iinclude -fsanitize=fuzzer,address,undefined \
		-o $@ $(filter %.c,$^) $(LDLIBS)

C_FILES = $(wildcard src/*/*.c src/*/*.h src/*/*/*.c src/*/*/*.h include/quire/*/*.h tests/unit/*.c \
	tests/unit/*.h tests/fuzz/*.c tests/helpers/*.c)
format:
	clang-format -i $(C_FILES)

check-layers:
	@tools/check-layers $(LAYERS) cli

lint: check-layers
	clang-format --dry-run -Werror $(C_FILES)
	cppcheck --quiet --error-exitcode=1 --enable=warning,portability --inline-suppr \
		--suppress=missingIncludeSystem -Iinclude -D_GNU_SOURCE src

# End-to-end suites: real nginx, gpg, s3rver; run against the ASan+UBSan build, each under
# a deadline (E2E_TIMEOUT seconds, 300; see tests/e2e/run.sh).
E2E ?= $(wildcard tests/e2e/test_*.sh)
e2e: asan
	$(MAKE) helpers
	@tests/e2e/run.sh build/asan/quire $(E2E)

test: deps
	$(MAKE) lint
	$(MAKE) all
	$(MAKE) asan
	$(MAKE) $(ASAN_VARS) check-unit
	$(MAKE) tsan
	$(MAKE) FUZZ_SECONDS=$(FUZZ_SECONDS) fuzz
	$(MAKE) e2e

demo: deps all
	tools/demo.sh

bench: deps all
	tools/bench

clean:
	rm -rf build

-include $(shell find build -name '*.d' 2>/dev/null)
