# tests/e2e/e2e.mk: end-to-end targets, included from the top-level Makefile
# (or run alone: make -f tests/e2e/e2e.mk e2e). See tests/e2e/README.md.
E2E_DIR := $(dir $(lastword $(MAKEFILE_LIST)))

.PHONY: e2e bench-e2e

# Real kube-apiserver + etcd (tests/apiserver), the release webhook, the Rust e2e tests.
e2e:
	$(E2E_DIR)run.sh e2e

# p50/p99 of Service creates with and without the webhook registered (E2E_BENCH_N, default 300).
bench-e2e:
	$(E2E_DIR)run.sh bench
