# heapdelta: one non-recursive Makefile, everything built under build/.
#
#   make            build/libheapdelta.so and build/heapdelta
#   make demo       install missing build dependencies, build, run the demo
#   make test       install missing test dependencies, build, run every test
#   make bench      the benchmark against heaptrack (about 20 minutes)
#   make bench-instructions
#                   the same workloads under cachegrind: instructions executed
#                   untraced, under heapdelta and sampled (about 12 minutes)
#   make install    PREFIX=/usr/local DESTDIR= (shim, command, header)
#   make ARCH=aarch64
#                   cross-build the aarch64 shim and test fixtures into
#                   build-aarch64/ (aarch64-linux-gnu-gcc; the analyzer stays
#                   the host's); run under qemu-aarch64 by tests/e2e_aarch64.py.
#                   Natively on an aarch64 machine plain `make` builds all.

PREFIX  ?= /usr/local
DESTDIR ?=
CC      ?= cc
B       := build

# A cross build: ARCH names another architecture than the host's.
HOST_ARCH := $(shell uname -m)
ARCH      ?= $(HOST_ARCH)
ifneq ($(ARCH),$(HOST_ARCH))
CROSS   := $(ARCH)-linux-gnu-
B       := build-$(ARCH)
CC      := $(CROSS)gcc
CXX     := $(CROSS)g++
endif

WARN    := -Wall -Wextra -Werror -Wshadow -Wpointer-arith -Wstrict-prototypes \
           -Wmissing-prototypes -Wvla -Wformat=2 -Wno-missing-field-initializers
CFLAGS  ?= -O2 -g
BASE    := -std=gnu11 $(WARN) -D_GNU_SOURCE

# The shim: position independent, everything hidden but the interposed
# names, initial-exec TLS for the re-entrancy guard, frame pointers kept so
# the frame-pointer unwinder can walk through our own frames.
SHIM_CFLAGS := $(BASE) $(CFLAGS) -flto -fPIC -fvisibility=hidden -ftls-model=initial-exec \
               -fno-builtin-malloc -fno-builtin-free -fno-builtin-calloc -fno-builtin-realloc \
               -fno-omit-frame-pointer -Ishim -Iformat
SHIM_SRC    := shim/init.c shim/reach.c shim/entry.c shim/capture.c shim/cfi.c shim/stacks.c shim/live.c \
               shim/modules.c shim/snapshot.c shim/creds.c shim/threads.c \
               shim/entry_cxx.c shim/blocks_large.c shim/os.c shim/options.c shim/process.c shim/triggers.c shim/thin.c shim/python.c shim/jit.c shim/total.c
SHIM_OBJ    := $(SHIM_SRC:shim/%.c=$(B)/shim/%.o)

AN_CFLAGS   := $(BASE) $(CFLAGS) -Iformat -Ianalyzer -I$(B)/gen -DHD_PREFIX='"$(PREFIX)"'
AN_SRC      := $(wildcard analyzer/*.c)
AN_OBJ      := $(AN_SRC:analyzer/%.c=$(B)/analyzer/%.o) $(B)/gen/profile.pb-c.o
AN_LIBS     := -ldw -lelf -lprotobuf-c -lz -lstdc++ -lm

ifdef CROSS
all: $(B)/libheapdelta.so cross-fixtures
else
all: $(B)/libheapdelta.so $(B)/heapdelta
endif

$(B)/shim/%.o: shim/%.c shim/internal.h shim/arch.h format/hd_format.h | $(B)/shim
	$(CC) $(SHIM_CFLAGS) -c $< -o $@

# The C++ operators let std::bad_alloc pass through their frames, restoring
# the busy flag on the way (a cleanup).
$(B)/shim/entry_cxx.o: SHIM_CFLAGS += -fexceptions

$(B)/libheapdelta.so: $(SHIM_OBJ)
	$(CC) $(CFLAGS) -flto -fPIC -shared -Wl,-z,now -Wl,-z,nodelete -o $@ $(SHIM_OBJ) -ldl -lpthread -lm

$(B)/analyzer/%.o: analyzer/%.c $(wildcard analyzer/*.h) format/hd_format.h $(B)/gen/profile.pb-c.h | $(B)/analyzer
	$(CC) $(AN_CFLAGS) -c $< -o $@

# The HTML report's page, embedded by write_html.c (.incbin).
$(B)/analyzer/write_html.o: analyzer/html_template.html

# pprof's profile.proto, compiled to C by protoc-c (generated code: its own,
# milder warning flags).
$(B)/gen/profile.pb-c.c $(B)/gen/profile.pb-c.h: analyzer/profile.proto
	mkdir -p $(B)/gen
	protoc-c --proto_path=analyzer --c_out=$(B)/gen profile.proto

$(B)/gen/profile.pb-c.o: $(B)/gen/profile.pb-c.c
	$(CC) $(CFLAGS) -std=gnu11 -I$(B)/gen -c $< -o $@

$(B)/heapdelta: $(AN_OBJ)
	$(CC) -o $@ $(AN_OBJ) $(AN_LIBS)

$(B)/shim $(B)/analyzer:
	mkdir -p $@

deps:
	scripts/deps.sh build

demo:
	scripts/deps.sh build
	$(MAKE) all
	scripts/demo.sh

test:
	scripts/deps.sh test
	$(MAKE) test-build
	tests/run

bench:
	scripts/deps.sh bench
	$(MAKE) all
	python3 scripts/bench.py

bench-instructions:
	scripts/deps.sh bench
	$(MAKE) all
	python3 scripts/bench.py --instructions

install: all
	install -d $(DESTDIR)$(PREFIX)/bin $(DESTDIR)$(PREFIX)/lib/heapdelta $(DESTDIR)$(PREFIX)/include
	install -m 755 $(B)/heapdelta $(DESTDIR)$(PREFIX)/bin/heapdelta
	install -m 755 $(B)/libheapdelta.so $(DESTDIR)$(PREFIX)/lib/heapdelta/libheapdelta.so
	install -m 644 shim/heapdelta.h $(DESTDIR)$(PREFIX)/include/heapdelta.h

clean:
	rm -rf $(B)

.PHONY: all deps demo test bench bench-instructions install clean

# ---- tests -------------------------------------------------------------
# Fixtures are built the way users build: -O2 -g, no frame pointers forced.
T := $(B)/tests
FIXTURES := $(T)/sites $(T)/sites_cpp $(T)/threads $(T)/grow $(T)/triggers $(T)/static_hello \
            $(T)/sites_fp $(T)/bindings $(T)/leaky $(T)/robust $(T)/longrun $(T)/libplugin.so $(T)/libmtrace_start.so \
            $(T)/threads_jemalloc $(T)/leaky_jemalloc $(T)/sampling_jemalloc $(T)/slowleak $(T)/sampling $(T)/heapdelta_asan \
            $(T)/teardown $(T)/churn $(T)/sampling_cpp $(T)/reload $(T)/libreload_a.so $(T)/libreload_b.so $(T)/cxxops $(T)/pyext/pyext.so
FIXTURES += $(T)/zero $(T)/twostacks $(T)/samesp $(T)/wrappers $(T)/libgwrap.so $(T)/service $(T)/reach
FIXTURES += $(T)/peak $(T)/dyntls $(T)/libtlsplug.so $(T)/sandbox $(T)/coroutines $(T)/nocfi
FIXTURES += $(T)/libpoolnew.so $(T)/cxxpool
SAN := -fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=all
UNIT_AN_SRC := analyzer/snapshot.c analyzer/util.c
UNITS := $(T)/unit_tables $(T)/unit_tables_tsan $(T)/unit_reader $(T)/unit_models $(T)/fuzz_reader

$(T):
	mkdir -p $@

$(T)/%: tests/fixtures/%.c | $(T)
	$(CC) -O2 -g -Ishim -pthread -o $@ $<

$(T)/sites_fp: tests/fixtures/sites.c | $(T)
	$(CC) -O2 -g -fno-omit-frame-pointer -o $@ $<

$(T)/%: tests/fixtures/%.cpp | $(T)
	$(CXX) -O2 -g -Ishim -pthread -o $@ $<

# The same fixtures with jemalloc as the program's allocator.
$(T)/%_jemalloc: tests/fixtures/%.c | $(T)
	$(CC) -O2 -g -pthread -o $@ $< -ljemalloc

$(T)/libplugin.so: tests/fixtures/plugin.c | $(T)
	$(CC) -O2 -g -fPIC -shared -o $@ $<

# Thread-local storage reached through the DTV (dyntls.c dlopens it).
$(T)/libtlsplug.so: tests/fixtures/tlsplug.c | $(T)
	$(CC) -O2 -g -fPIC -shared -o $@ $<

# A CPython 3.11 extension module (python3-dev), in a folder of its own.
$(T)/pyext/pyext.so: tests/fixtures/pyext.c | $(T)
	mkdir -p $(T)/pyext
	$(CC) -O2 -g -fPIC -shared $$(/usr/bin/python3.11-config --includes) -o $@ $<

# A g_malloc-style wrapper in a shared library, and the program that
# allocates through it (found beside the program at run time).
$(T)/libgwrap.so: tests/fixtures/gwrap.c | $(T)
	$(CC) -O2 -g -fPIC -shared -o $@ $<

$(T)/wrappers: tests/fixtures/wrappers.c $(T)/libgwrap.so | $(T)
	$(CC) -O2 -g -Ishim -o $@ $< -L$(T) -lgwrap -Wl,-rpath,'$$ORIGIN'

# A library that replaces operator new and delete with a pool of its own,
# and the program that uses it (found beside the program at run time).
$(T)/libpoolnew.so: tests/fixtures/poolnew.cpp | $(T)
	$(CXX) -O2 -g -fPIC -shared -o $@ $<

$(T)/cxxpool: tests/fixtures/cxxpool.cpp $(T)/libpoolnew.so | $(T)
	$(CXX) -O2 -g -o $@ $< -L$(T) -lpoolnew -Wl,-rpath,'$$ORIGIN'

$(T)/libreload_%.so: tests/fixtures/reload_%.c | $(T)
	$(CC) -O2 -g -fPIC -shared -o $@ $<

$(T)/libmtrace_start.so: tests/fixtures/mtrace_start.c | $(T)
	$(CC) -O2 -g -fPIC -shared -o $@ $<

$(T)/static_hello: tests/fixtures/static_hello.c | $(T)
	$(CC) -O2 -static -o $@ $<

TABLE_SRC := shim/stacks.c shim/live.c shim/blocks_large.c shim/threads.c tests/unit/test_tables.c
$(T)/unit_tables: $(TABLE_SRC) shim/internal.h shim/arch.h tests/unit/testhelp.h | $(T)
	$(CC) -std=gnu11 $(WARN) -D_GNU_SOURCE -O1 -g $(SAN) -Ishim -Iformat -Itests/unit -pthread -o $@ $(TABLE_SRC)

$(T)/unit_tables_tsan: $(TABLE_SRC) shim/internal.h shim/arch.h tests/unit/testhelp.h | $(T)
	$(CC) -std=gnu11 $(WARN) -D_GNU_SOURCE -O1 -g -fsanitize=thread -Ishim -Iformat -Itests/unit -pthread -o $@ $(TABLE_SRC)

$(T)/unit_reader: $(UNIT_AN_SRC) tests/unit/test_reader.c analyzer/snapshot.h tests/unit/testhelp.h | $(T)
	$(CC) -std=gnu11 $(WARN) -D_GNU_SOURCE -O1 -g $(SAN) -Iformat -Ianalyzer -Itests/unit -o $@ \
		$(UNIT_AN_SRC) tests/unit/test_reader.c -lm

# The analyzer's models (trend, sites, suppressions, gate, baselines, the
# JSON emitter) on synthetic input; the symbolizer is linked but not used.
UNIT_MODEL_SRC := analyzer/site.c analyzer/alloc_fns.c analyzer/trend.c analyzer/group.c analyzer/gate.c analyzer/baseline.c \
                  analyzer/suppress.c analyzer/json.c analyzer/symbolize.c analyzer/symbolize_opts.c analyzer/debuginfod.c \
                  analyzer/snapshot.c analyzer/util.c analyzer/pyframes.c
$(T)/unit_models: $(UNIT_MODEL_SRC) tests/unit/test_models.c $(wildcard analyzer/*.h) tests/unit/testhelp.h | $(T)
	$(CC) -std=gnu11 $(WARN) -D_GNU_SOURCE -O1 -g $(SAN) -Iformat -Ianalyzer -Itests/unit -o $@ \
		$(UNIT_MODEL_SRC) tests/unit/test_models.c -ldw -lelf -lstdc++ -lm

# The whole analyzer under ASan/UBSan, for the end-to-end tests.
$(T)/heapdelta_asan: $(AN_SRC) $(wildcard analyzer/*.h) analyzer/html_template.html format/hd_format.h $(B)/gen/profile.pb-c.c | $(T)
	$(CC) -std=gnu11 $(WARN) -D_GNU_SOURCE -O1 -g $(SAN) -Iformat -Ianalyzer -I$(B)/gen -o $@ $(AN_SRC) \
		$(B)/gen/profile.pb-c.c $(AN_LIBS)

$(T)/fuzz_reader: $(UNIT_AN_SRC) tests/fuzz/fuzz_reader.c | $(T)
	clang -std=gnu11 -D_GNU_SOURCE -O1 -g -fsanitize=fuzzer,address,undefined -Iformat -Ianalyzer -o $@ \
		$(UNIT_AN_SRC) tests/fuzz/fuzz_reader.c -lm

test-build: all $(FIXTURES) $(UNITS)

# The fixtures of the aarch64 tier (tests/e2e_aarch64.py), cross-built.
# checkpoints and forkexec are the tier's own; it also runs them natively,
# to compare each aarch64 run with the same fixture's x86-64 run.
A64_OWN_FIXTURES := $(T)/checkpoints $(T)/forkexec
CROSS_FIXTURES := $(T)/sites $(T)/sites_fp $(T)/threads $(T)/sites_cpp $(T)/sites_pac \
                  $(T)/robust $(T)/libmtrace_start.so $(A64_OWN_FIXTURES)
cross-fixtures: $(CROSS_FIXTURES)
test-build: $(A64_OWN_FIXTURES)

# sites.c with return addresses signed by pointer authentication (aarch64).
$(T)/sites_pac: tests/fixtures/sites.c | $(T)
	$(CC) -O2 -g -mbranch-protection=pac-ret -o $@ $<

# The aarch64 tier from the host: what tests/e2e_aarch64.py runs under
# qemu-aarch64 (it calls this itself when its files are missing).
aarch64:
	$(MAKE) ARCH=aarch64 all

.PHONY: test-build cross-fixtures aarch64
