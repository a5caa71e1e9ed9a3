#!/usr/bin/env bash
# Reproducer (not part of make e2e): `serve` WITHOUT --watch-cluster never learns namespace labels,
# so a policy rule's match.namespaceSelector only ever sees kubernetes.io/metadata.name. Fixed by
# --watch-cluster (Namespace watch), which the Deployment and the e2e driver use; the fixed
# behaviour is covered by tests/e2e/nssel.rs. Kept to show what a webhook without the watch does.
#   - matchLabels {exposure: public} never matches a namespace labelled exposure=public;
#   - NotIn [internal] matches a namespace labelled exposure=internal (as in manifests/policy.yaml).
# Expected: "pub" denied by public-must-be-dual, "internal" allowed. Prints what happened.
# Needs: tests/apiserver/build.sh done and the release webhook in $CARGO_TARGET_DIR (or ./target).
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../../.." && pwd)"
H="$ROOT/tests/apiserver"
source "$H/lib.sh"
W="${CARGO_TARGET_DIR:-$ROOT/target}/release/dualstack-webhook"
R="$(mktemp -d "${TMPDIR:-/tmp}/dsw-repro.XXXXXX")"
trap 'stop_pidfile "$R" webhook; "$H/stop.sh" "$R/api" >/dev/null 2>&1 || true; rm -rf -- "$R"' EXIT
cat >"$R/policy.yaml" <<'YAML'
apiVersion: dualstack-webhook/v1alpha1
kind: DualStackPolicy
rules:
  - name: public-must-be-dual
    match: {namespaceSelector: {matchLabels: {exposure: public}}}
    require: {dualStack: true}
    action: Deny
  - name: not-internal-ipv6-first
    match:
      namespaceSelector: {matchExpressions: [{key: exposure, operator: NotIn, values: [internal]}]}
    require: {primaryFamily: IPv6}
    action: Deny
YAML
"$W" certs --out "$R/certs" >/dev/null
SKIP_BUILD=1 "$H/start.sh" --workdir "$R/api" >/dev/null 2>&1
PORT="$(free_port)"; ADMIN="$(free_port)"
setsid "$W" serve --listen "127.0.0.1:$PORT" --admin-listen "127.0.0.1:$ADMIN" \
  --tls-cert "$R/certs/tls.crt" --tls-key "$R/certs/tls.key" --policy "$R/policy.yaml" \
  --service-cidrs 10.96.0.0/16,fd00:10:96::/112 </dev/null >"$R/webhook.log" 2>&1 &
echo $! >"$R/webhook.pid"
mkdir -p "$R/logs" && ln -sf "$R/webhook.log" "$R/logs/webhook.log"
wait_until "$R" webhook 30 curl -fsS "http://127.0.0.1:$ADMIN/readyz"
K=("$BIN/kubectl" --kubeconfig "$R/api/kubeconfig")
"${K[@]}" apply -f - >/dev/null <<YAML
apiVersion: admissionregistration.k8s.io/v1
kind: ValidatingWebhookConfiguration
metadata: {name: repro}
webhooks:
- name: validate.dualstack-webhook.io
  admissionReviewVersions: [v1]
  sideEffects: None
  clientConfig: {url: "https://127.0.0.1:$PORT/validate", caBundle: $(base64 -w0 "$R/certs/ca.crt")}
  rules: [{operations: [CREATE, UPDATE], apiGroups: [""], apiVersions: [v1], resources: [services]}]
YAML
sleep 2
"${K[@]}" create namespace pub >/dev/null && "${K[@]}" label namespace pub exposure=public >/dev/null
"${K[@]}" create namespace internal >/dev/null && "${K[@]}" label namespace internal exposure=internal >/dev/null
for ns in pub internal; do
  echo "--- namespace $ns ($("${K[@]}" get ns "$ns" -o jsonpath='{.metadata.labels.exposure}')): single-stack IPv4 ClusterIP Service"
  "${K[@]}" -n "$ns" create service clusterip s1 --tcp=80:80 2>&1 | tail -n 1 || true
done
