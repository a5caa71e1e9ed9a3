# Reliability targets (issue 6), included from the top-level Makefile:
#   make fuzz-smoke   a short bounded run of every fuzz target (part of `make test`)
#   make fuzz         a longer run (FUZZ_SECONDS per target, default 300)
#   make deny         cargo deny: bans, licenses, sources (offline); advisories where reachable
#
# The fuzz targets live in fuzz/ (cargo-fuzz, libFuzzer; nightly, its own workspace and lock file).
# Seeds: every tests/fixtures JSON, read-only; what the fuzzer adds goes to fuzz/corpus/ (ignored
# by git). A crash leaves its input in fuzz/artifacts/TARGET/ and fails the target: turn it into a
# regression test (tests/wire_properties.rs) before fixing it.

FUZZ_TOOLCHAIN ?= nightly
FUZZ_TARGETS := review engine patch
FUZZ_SECONDS ?= 300
# The smoke run: ~30 s of fuzzing in all, after the (cached) build, from a fixed seed so that a CI
# run repeats the same mutations (exploration belongs to `make fuzz`).
FUZZ_SMOKE_SECONDS_review := 10
FUZZ_SMOKE_SECONDS_engine := 10
FUZZ_SMOKE_SECONDS_patch := 5
# libFuzzer: one input may take at most 10 s and the process 2 GiB (the machine has 24).
FUZZ_FLAGS := -timeout=10 -rss_limit_mb=2048 -print_final_stats=1

.PHONY: fuzz fuzz-smoke fuzz-build fuzz-tools deny

## fuzz-tools: cargo-fuzz (from crates.io) and the nightly toolchain it needs
fuzz-tools:
	@command -v cargo-fuzz >/dev/null 2>&1 || $(CARGO) install cargo-fuzz --locked
	@rustup run $(FUZZ_TOOLCHAIN) rustc --version >/dev/null 2>&1 || { \
	  echo "fuzz: the $(FUZZ_TOOLCHAIN) toolchain is not installed (toolchains cannot be downloaded here)" >&2; exit 1; }

fuzz-build: fuzz-tools
	cargo +$(FUZZ_TOOLCHAIN) fuzz build -O

define fuzz_run
	@mkdir -p fuzz/corpus/$(1)
	cargo +$(FUZZ_TOOLCHAIN) fuzz run -O $(1) fuzz/corpus/$(1) $(if $(filter review,$(1)),tests/fixtures) $(if $(filter review,$(1)),fuzz/regressions/review) -- \
	  $(FUZZ_FLAGS) -max_total_time=$(2) $(3)

endef

## fuzz-smoke: every fuzz target for a few seconds (bounded; part of make test)
fuzz-smoke: fuzz-build
	$(foreach t,$(FUZZ_TARGETS),$(call fuzz_run,$(t),$(FUZZ_SMOKE_SECONDS_$(t)),-seed=1))

## fuzz: every fuzz target for FUZZ_SECONDS (default 300) each
fuzz: fuzz-build
	$(foreach t,$(FUZZ_TARGETS),$(call fuzz_run,$(t),$(FUZZ_SECONDS)))

## deny: dependency policy (deny.toml). The advisory database is on GitHub, which is not reachable
## from here: advisories are checked only where it is, and never block.
deny:
	@command -v cargo-deny >/dev/null 2>&1 || $(CARGO) install cargo-deny --locked
	# cargo deny reads the metadata of every platform's dependencies: fetch them first (crates.io is
	# reachable; only the advisory database on GitHub is not).
	$(CARGO) fetch --locked
	cargo deny --offline check bans licenses sources
	-cargo deny check advisories
