#!/usr/bin/env bash
# tests/kind/run.sh [TEST-ARGS...]: the e2e scenarios against dualstack-webhook running *in* a
# dual-stack kind cluster (NOT runnable on the build machines: they have no container engine).
#
#  1. builds the release binary (for `certs`) and the e2e test binary on the host;
#  2. creates the kind cluster (tests/kind/cluster.yaml: dual-stack, IPv4 primary, service ranges
#     10.96.0.0/16,fd00:10:96::/112 like the e2e harness);
#  3. docker build -t dualstack-webhook:kind . and kind load docker-image;
#  4. manifests/overlays/self-managed/generate.sh, then applies tests/kind/overlay (that overlay
#     with tests/e2e/policy.yaml as the policy and the :kind image);
#  5. waits for the rollout (readiness = both cluster watches listed), until the pods registered
#     the webhooks into the empty configurations (--register-webhooks) and until the API server
#     calls the webhook;
#  6. runs the e2e tests that only need a cluster with the webhook registered (below), one at a
#     time, with E2E_KUBECONFIG pointing at the kind cluster;
#  7. deletes the cluster (KEEP=1 keeps it, and the work dir).
# Extra arguments go to the test binary and replace the default selection (e.g. `nssel::`).
#
# Needs: docker, kind (v0.20+ for ipFamily: dual with these fields), kubectl (with kustomize, 1.27+),
# cargo, openssl. Env: CLUSTER (default dualstack-webhook), CARGO_TARGET_DIR, KEEP=1.
set -euo pipefail
KIND_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(cd "$KIND_DIR/../.." && pwd)"
CLUSTER="${CLUSTER:-dualstack-webhook}"
IMAGE="dualstack-webhook:kind"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$ROOT/target}"
log() { echo "kind-e2e: $*" >&2; }
die() { log "error: $*"; exit 1; }

for tool in docker kind kubectl cargo openssl; do
  command -v "$tool" >/dev/null || die "$tool not found (this script needs a container engine and kind)"
done

# The e2e tests that make sense against an in-cluster webhook: everything that creates Services
# through the API server and reads what it stored. Not: setup:: (registers a loopback URL), the
# audit-log test (needs the API server's audit log), failure::, upgrade::, variants::, cluster::,
# audit::, manifests:: (start their own webhooks and API servers from tests/apiserver), bench::.
DEFAULT_TESTS=(defaults:: pinned:: types:: updates:: actions:: nssel::
  --skip actions::audit_finding_is_in_the_audit_log)

WD="$(mktemp -d "${TMPDIR:-/tmp}/dsw-kind.XXXXXX")"
export KUBECONFIG="$WD/kubeconfig"
created=0
cleanup() {
  local rc=$?
  if ((created)) && [[ "${KEEP:-0}" != 1 ]]; then
    kind delete cluster --name "$CLUSTER" --kubeconfig "$KUBECONFIG" || true
  fi
  if ((rc == 0)) && [[ "${KEEP:-0}" != 1 ]]; then rm -rf -- "$WD"; else log "work dir kept: $WD"; fi
  log "finished with exit code $rc"
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

log "build the release binary and the e2e test binary"
cd "$ROOT"
cargo build --release --locked
TEST_BIN="$(cargo test --locked --test e2e --no-run --message-format=json \
  | grep '"target":{[^}]*"name":"e2e"' | sed -n 's/.*"executable":"\([^"]*\)".*/\1/p' | tail -n 1)"
[[ -x "$TEST_BIN" ]] || die "no e2e test binary found"
WEBHOOK_BIN="$CARGO_TARGET_DIR/release/dualstack-webhook"

log "create the kind cluster $CLUSTER"
kind get clusters 2>/dev/null | grep -qx "$CLUSTER" && die "a kind cluster named $CLUSTER exists already (CLUSTER=...)"
created=1
kind create cluster --name "$CLUSTER" --config "$KIND_DIR/cluster.yaml" --kubeconfig "$KUBECONFIG" --wait 180s

log "build and load the image $IMAGE"
docker build -t "$IMAGE" "$ROOT"
kind load docker-image "$IMAGE" --name "$CLUSTER"

log "certificate (self-managed overlay) and apply"
DUALSTACK_WEBHOOK="$WEBHOOK_BIN" "$ROOT/manifests/overlays/self-managed/generate.sh"
kubectl kustomize --load-restrictor LoadRestrictionsNone "$KIND_DIR/overlay" >"$WD/rendered.yaml"
kubectl apply --server-side --field-manager=dualstack-webhook-kind -f "$WD/rendered.yaml"

log "wait for the rollout (readiness: certificates, policy, both cluster watches listed)"
kubectl -n dualstack-webhook rollout status deployment/dualstack-webhook --timeout=300s
kubectl -n dualstack-webhook wait --for=condition=Available deployment/dualstack-webhook --timeout=60s

log "wait until the pods registered the webhooks (the manifests ship the configurations empty)"
registered() {
  [[ -n "$(kubectl get mutatingwebhookconfiguration dualstack-webhook -o jsonpath='{.webhooks[*].name}')" ]] \
    && [[ -n "$(kubectl get validatingwebhookconfiguration dualstack-webhook -o jsonpath='{.webhooks[*].name}')" ]]
}
deadline=$((SECONDS + 120))
until registered; do
  ((SECONDS < deadline)) || die "the webhooks were not registered (kubectl -n dualstack-webhook logs deploy/dualstack-webhook)"
  sleep 2
done

log "wait until the API server calls the webhook"
kubectl create namespace e2e-probe --dry-run=client -o yaml | kubectl apply -f - >/dev/null
deadline=$((SECONDS + 120))
until [[ "$(kubectl -n e2e-probe create service clusterip probe --tcp=80:80 --dry-run=server \
  -o jsonpath='{.spec.ipFamilyPolicy}' 2>/dev/null)" == PreferDualStack ]]; do
  ((SECONDS < deadline)) || die "the API server does not call the webhook (kubectl -n dualstack-webhook logs deploy/dualstack-webhook)"
  sleep 2
done

log "run the e2e scenarios against the in-cluster webhook"
mkdir -p "$WD/pids"
export E2E_WORKDIR="$WD"
export E2E_KUBECONFIG="$KUBECONFIG"
E2E_KUBECTL="$(command -v kubectl)"
export E2E_KUBECTL
export E2E_WEBHOOK_BIN="$WEBHOOK_BIN"
export E2E_POLICY="$ROOT/tests/e2e/policy.yaml"
export E2E_SERVICE_CIDRS="10.96.0.0/16,fd00:10:96::/112"
if (($# > 0)); then
  "$TEST_BIN" --ignored --test-threads=1 "$@"
else
  "$TEST_BIN" --ignored --test-threads=1 "${DEFAULT_TESTS[@]}"
fi
