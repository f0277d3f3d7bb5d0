# Thin wrapper over meson so that the quick start is two commands.
#   make run     set up, build, run a node with config/dev.yaml
#   make test    set up, build, run every test; ends with "N passed, N failed"
#   make bench   optimised build, run troupe-bench, and the cluster and grain
#                benchmarks of real nodes (root; ONLY=prefix to select,
#                REPS=N: N processes, min/median/max per workload)
#   make bench-compare OLD=rev NEW=rev   both commits' benchmarks, run
#                alternately in one sitting (REPS=N, ONLY=prefix)
#   make test-fault    membership and grains under loss, partitions and churn (root)
#   make test-tsan / make test-asan   every test under sanitizers
#   make fuzz    the fuzz target of what peers send, for FUZZ_SECONDS (default 60)
#   make package       the Debian packages in build/package (lintian-checked)
#   make test-package  build them, unpack them into a throwaway root and walk
#                      the README's Install and Write-a-plugin sections there

comma       := ,
BUILD       ?= build
BENCH_BUILD ?= build-release
ONLY        ?=
REPS        ?=
OLD         ?= HEAD~1
NEW         ?= HEAD
MESON_OPTS  ?=
# Warnings are errors in CI.
ifeq ($(CI),true)
MESON_OPTS += -Dwerror=true
endif

.PHONY: all deps build run test test-fault bench bench-compare test-tsan test-asan fuzz package test-package clean

all: build

deps:
	@scripts/install-deps

# meson setup once per build directory; later runs only rebuild.
define setup
	@test -f $(1)/build.ninja || meson setup $(1) $(MESON_OPTS) $(2)
endef

build: deps
	$(call setup,$(BUILD),)
	@ninja -C $(BUILD) -j2

# The example plugins, gathered in one folder as a node's plugin dir would hold them.
run: build
	@mkdir -p $(BUILD)/plugin-dir
	@ln -sf $(CURDIR)/$(BUILD)/plugins/*/*.so $(BUILD)/plugin-dir/
	@test -s $(BUILD)/dev-cluster.key || (umask 077; head -c 32 /dev/urandom | base64 > $(BUILD)/dev-cluster.key)
	$(BUILD)/daemon/troupe-node --config config/dev.yaml

test: build
	@scripts/run-tests $(BUILD) --no-suite fault

# Cluster membership under real faults, in a network namespace (root).
test-fault: build
	@scripts/run-tests $(BUILD) --suite fault

bench: deps
	$(call setup,$(BENCH_BUILD),-Dbuildtype=release)
	@ninja -C $(BENCH_BUILD) -j2 test/bench/troupe-bench
# (with a PostgreSQL server of its own for the persist_pg workloads)
ifeq ($(REPS),)
	test/integration/pg_run.py $(BENCH_BUILD)/test/bench/troupe-bench $(if $(ONLY),--only $(ONLY))
else
	@test/integration/pg_run.py scripts/bench reps $(BENCH_BUILD)/test/bench/troupe-bench $(REPS) $(ONLY)
endif
	@case "$(ONLY)" in ""|cluster*) test/bench/cluster_bench.py $(BENCH_BUILD)/daemon/troupe-node $(BENCH_BUILD) $(ONLY);; esac
	@case "$(ONLY)" in ""|grain*) test/bench/grain_bench.py $(BENCH_BUILD)/daemon/troupe-node $(BENCH_BUILD) $(ONLY);; esac
	@case "$(ONLY)" in ""|grain*) test/bench/handover_bench.py $(BENCH_BUILD)/daemon/troupe-node $(BENCH_BUILD) $(ONLY);; esac
	@case "$(ONLY)" in ""|pubsub*) test/bench/pubsub_bench.py $(BENCH_BUILD)/daemon/troupe-node $(BENCH_BUILD) $(ONLY);; esac

bench-compare: deps
	@scripts/bench compare $(OLD) $(NEW) --reps $(or $(REPS),5) $(if $(ONLY),--only $(ONLY))

test-tsan: deps
	$(call setup,build-tsan,-Db_sanitize=thread)
	@ninja -C build-tsan -j2
	@TSAN_OPTIONS="halt_on_error=1 second_deadlock_stack=1" scripts/run-tests build-tsan --no-suite fault

# GCC 12 reports maybe-uninitialized false positives inside libstdc++ when
# built with ASan+UBSan; every other warning stays an error.
test-asan: deps
	$(call setup,build-asan,-Db_sanitize=address$(comma)undefined -Db_lundef=false -Dcpp_args=-Wno-maybe-uninitialized)
	@ninja -C build-asan -j2
	@ASAN_OPTIONS="detect_leaks=1" UBSAN_OPTIONS="halt_on_error=1 print_stacktrace=1" \
		scripts/run-tests build-asan --no-suite fault

FUZZ_SECONDS ?= 60
fuzz: build
	@scripts/fuzz $(BUILD) $(FUZZ_SECONDS)

package: deps
	@scripts/package build/package

test-package: package
	@test/package/package_test.py build/package

clean:
	rm -rf $(BUILD) $(BENCH_BUILD) build-tsan build-asan build-compare
	git worktree prune
