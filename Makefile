# The commands humans and CI run. `make test` is the whole suite (the README's test command).
CARGO ?= cargo
BIN := target/release/dualstack-webhook

.PHONY: test lint unit fixtures release run clean

## test: lint, unit/property/service/TLS/hostile/fault tests, curl fixtures, a short fuzz run, the
## dependency policy, the Helm chart's checks, and end-to-end tests against a real kube-apiserver
test: lint unit fixtures fuzz-smoke deny helm e2e

## lint: formatting and clippy with warnings as errors
lint:
	$(CARGO) fmt --check
	$(CARGO) clippy --locked --all-targets -- -D warnings

## unit: cargo test (unit, table, property, service and real-socket TLS tests), after
## tests/install-deps.sh (tests/outputs.rs runs xmllint, tests/image.rs objdump)
unit:
	tests/install-deps.sh
	$(CARGO) test --locked

## fixtures: every tests/fixtures request over curl --cacert and through `review`
fixtures: release
	tests/install-deps.sh
	tests/fixtures.sh

release:
	$(CARGO) build --release --locked

## run: the webhook on the embedded default (dev certificates in ./certs, the example policy)
run:
	$(CARGO) run --release --locked -- serve --dev

clean:
	$(CARGO) clean

# fuzz-smoke, fuzz, deny: cargo-fuzz targets and the dependency policy (deny.toml).
include tests/reliability.mk

# bench, bench-load, bench-micro: the webhook against a floor server (not part of make test).
include bench/bench.mk

# e2e, bench-e2e: a real kube-apiserver v1.37.2 and etcd built from Go modules (tests/apiserver).
include tests/e2e/e2e.mk

# helm: the Helm chart (charts/dualstack-webhook) linted, rendered and compared with manifests/.
include tests/helm/helm.mk
