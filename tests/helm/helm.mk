# tests/helm/helm.mk: the Helm chart's checks, included from the top-level Makefile (or run alone:
# make -f tests/helm/helm.mk helm). helm comes from Go modules (tests/helm/build.sh), kubectl (for
# `kubectl kustomize`) from the e2e harness (tests/apiserver/build.sh); both builds are cached in
# /var/cache/dualstack-webhook/bin and are the only network steps (the Go module proxy).
HELM_MK_DIR := $(dir $(lastword $(MAKEFILE_LIST)))
CARGO ?= cargo
# (Not $(BIN): the top-level Makefile uses that name for the release binary.)
DSW_BIN := $(or $(DSW_CACHE),/var/cache/dualstack-webhook)/bin
CHART := charts/dualstack-webhook

.PHONY: helm

## helm: lint the chart (both certificate modes), render it (defaults, cert-manager, another
## namespace, a custom policy) and check it renders the objects of manifests/base and
## manifests/overlays/cert-manager (tests/helm/main.rs)
helm:
	$(HELM_MK_DIR)build.sh
	tests/apiserver/build.sh
	$(DSW_BIN)/helm lint --strict $(CHART)
	$(DSW_BIN)/helm lint --strict $(CHART) --namespace platform-system --set certificates.mode=cert-manager
	$(DSW_BIN)/helm template dualstack-webhook $(CHART) --namespace dualstack-webhook >/dev/null
	$(DSW_BIN)/helm template dualstack-webhook $(CHART) --namespace dualstack-webhook --set certificates.mode=cert-manager >/dev/null
	$(DSW_BIN)/helm template dualstack-webhook $(CHART) --namespace platform-system >/dev/null
	$(DSW_BIN)/helm template dualstack-webhook $(CHART) --namespace dualstack-webhook --set-file policy=tests/e2e/policy.yaml >/dev/null
	HELM=$(DSW_BIN)/helm KUBECTL=$(DSW_BIN)/kubectl $(CARGO) test --locked --test helm -- --include-ignored
