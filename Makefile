# vmon build.  `make` builds build/vmon; `make check` runs every test;
# `make demo` installs what is missing, builds, fetches the guest kit and
# boots it; `make bench` runs the benchmarks.

.DEFAULT_GOAL := all
CC ?= cc
CFLAGS_BASE := -std=gnu11 -Wall -Wextra -Werror -Wno-unused-parameter \
	-Wshadow -Wstrict-prototypes -Wmissing-prototypes -fno-strict-aliasing \
	-D_GNU_SOURCE -I.
OPT ?= -O2 -g
PKGS := capstone zlib libzstd jansson slirp liburing libisal
ifneq ($(filter-out deps clean demo,$(MAKECMDGOALS))$(if $(MAKECMDGOALS),,all),)
ifneq ($(shell pkg-config --exists $(PKGS) && echo ok),ok)
$(error missing libraries ($(PKGS)): run scripts/install-deps.sh)
endif
endif
LIBS := -lpthread -lrt $(shell pkg-config --libs $(PKGS))
CFLAGS_PKGS := $(shell pkg-config --cflags $(PKGS))

# Every subsystem folder contributes its .c files to libvmon.a; programs and
# tests link that library.  Adding a file needs no Makefile change.
SUBDIRS := util cpu accel machine hw boot chardev config emu block virtio net \
	monitor migration
LIB_SRCS := $(foreach d,$(SUBDIRS),$(wildcard $(d)/*.c $(d)/*/*.c))
UNIT_SRCS := $(wildcard tests/unit/test_*.c)
TOOL_SRCS := $(wildcard tools/*.c)

define build_variant
# $(1) = output dir, $(2) = extra CFLAGS, $(3) = extra LDFLAGS
$(1)_OBJS := $$(patsubst %.c,$(1)/obj/%.o,$$(LIB_SRCS))
$(1)/obj/%.o: %.c
	@mkdir -p $$(dir $$@)
	$$(CC) $$(CFLAGS_BASE) $$(CFLAGS_PKGS) $(2) $$(CFLAGS) -MMD -MP -c $$< -o $$@
$(1)/libvmon.a: $$($(1)_OBJS)
	@rm -f $$@
	ar rcs $$@ $$^
$(1)/vmon: $(1)/obj/main.o $(1)/libvmon.a
	$$(CC) $(2) $(3) $$(LDFLAGS) -o $$@ $$^ $$(LIBS)
$(1)/tools/%: $(1)/obj/tools/%.o $(1)/libvmon.a
	@mkdir -p $$(dir $$@)
	$$(CC) $(2) $(3) $$(LDFLAGS) -o $$@ $$^ $$(LIBS)
$(1)/tests/%: $(1)/obj/tests/unit/%.o $(1)/libvmon.a
	@mkdir -p $$(dir $$@)
	$$(CC) $(2) $(3) $$(LDFLAGS) -o $$@ $$^ $$(LIBS) -lcmocka
-include $$(shell find $(1)/obj -name '*.d' 2>/dev/null)
endef

SAN := -fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=all
B ?= build
BA ?= build-asan
$(eval $(call build_variant,$(B),$(OPT),))
$(eval $(call build_variant,$(BA),-O1 -g $(SAN),$(SAN)))

TOOLS := $(patsubst tools/%.c,%,$(TOOL_SRCS))
UNIT_TESTS := $(patsubst tests/unit/%.c,%,$(UNIT_SRCS))

.PHONY: all check unit-test system-test slow-test guest-tests demo bench deps guest-kit clean fuzz
all: $(B)/vmon $(addprefix $(B)/tools/,$(TOOLS))
	@for t in $(TOOLS); do ln -sf tools/$$t $(B)/$$t; done

guest-tests:
	$(MAKE) -C tests/guest OUT=$(abspath $(B))/guest-tests

# Every unit-test binary runs even after one fails; the last line counts.
unit-test: $(addprefix $(BA)/tests/,$(UNIT_TESTS))
	@pass=0; fail=0; failed=""; \
	for t in $^; do echo "== $$t"; \
		if $$t; then pass=$$((pass + 1)); else fail=$$((fail + 1)); failed="$$failed $${t##*/}"; fi; \
	done; \
	[ -z "$$failed" ] || echo "unit-test: failed:$$failed"; \
	echo "unit-test binaries: $$pass passed, $$fail failed"; [ $$fail -eq 0 ]

system-test: all $(BA)/vmon $(BA)/tools/vmon-img guest-tests guest-kit
	VMON=$(abspath $(B))/vmon GUEST_KIT=$(abspath $(B))/guest VMON_ASAN=$(abspath $(BA))/vmon GUEST_TESTS=$(abspath $(B))/guest-tests \
	VMON_IMG=$(abspath $(B))/tools/vmon-img VMON_IMG_ASAN=$(abspath $(BA))/tools/vmon-img \
		/usr/bin/python3 -m pytest -q tests/system $(PYTEST_ARGS)

# Unit tests run under ASan+UBSan; system tests run the optimised binary and,
# where a test asks for it, the sanitized one (VMON_ASAN).  The guest kit
# comes first so the unit test of the real kernel's boot protocol runs too.
check:
	@$(MAKE) --no-print-directory all $(BA)/vmon guest-tests guest-kit
	@u=passed; s=passed; \
	GUEST_KIT=$(abspath $(B))/guest $(MAKE) --no-print-directory unit-test || u=FAILED; \
	$(MAKE) --no-print-directory system-test || s=FAILED; \
	echo "check: unit-test $$u, system-test $$s"; \
	[ $$u = passed ] && [ $$s = passed ]

# Opt-in and slow: the Linux guest kit under -accel kvm (see the test's doc).
slow-test: all guest-kit
	VMON=$(abspath $(B))/vmon GUEST_KIT=$(abspath $(B))/guest \
		/usr/bin/python3 -m pytest -s -q tests/slow $(PYTEST_ARGS)

deps:
	scripts/install-deps.sh

guest-kit:
	scripts/guest-kit.sh $(B)/guest

demo: deps
	$(MAKE) all guest-tests
	scripts/guest-kit.sh $(B)/guest
	scripts/demo.sh

bench: all guest-tests
	bench/run-all.sh

clean:
	rm -rf build build-asan

# Bounded libFuzzer runs over the qcow2, kernel-image, QMP and migration
# payload parsers (clang); FUZZ_TIME=secs per harness.
fuzz: $(B)/tools/vmon-img guest-tests
	tests/fuzz/run.sh $(abspath $(B))/fuzz $(abspath $(B))/tools/vmon-img $(abspath $(B))/guest-tests
