# tests/e2e/e2e.mk: end-to-end targets, included from the top-level Makefile
# (or run alone: make -f tests/e2e/e2e.mk e2e). See tests/e2e/README.md.
E2E_DIR := $(dir $(lastword $(MAKEFILE_LIST)))

.PHONY: e2e bench-e2e

# Real kube-apiserver + etcd (tests/apiserver), the release webhook, the Rust e2e tests.
e2e:
	$(E2E_DIR)run.sh e2e

# What admission adds to Service creates and label updates through the API server: none, explicit
# fields, a MutatingAdmissionPolicy, a do-nothing webhook, the webhook as shipped (with and without
# matchConditions); p50/p99, calls per write, ratios; E2E_BENCH_N writes per arm (300),
# E2E_BENCH_RUNS runs (3). See bench/README.md and tests/e2e/bench.rs.
bench-e2e:
	$(E2E_DIR)run.sh bench
