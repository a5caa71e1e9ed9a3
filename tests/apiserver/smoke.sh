#!/usr/bin/env bash
# smoke.sh: proves the harness end to end, and cleans up after itself.
#  1. dual-stack (IPv4 primary): ClusterIP service, PreferDualStack gets two IPs,
#     server-side dry run of a MutatingWebhookConfiguration, and a real one is called
#  2. IPv6-primary ranges: the default family is IPv6
#  3. single-stack -> restart-apiserver.sh with dual-stack ranges on the same etcd:
#     a new PreferDualStack Service gets both families
# After each: stop.sh, and no process it recorded is left.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

"$HARNESS_DIR/build.sh"
export SKIP_BUILD=1
K="$BIN/kubectl"
ROOT="$(mktemp -d "${TMPDIR:-/tmp}/dsw-smoke.XXXXXX")"
passed=0 failed=0
dirs=()
cleanup() {
  for d in "${dirs[@]}"; do "$HARNESS_DIR/stop.sh" "$d" || true; done
  rm -rf -- "$ROOT"
}
trap cleanup EXIT

check() { # check NAME CMD...: runs CMD, counts the result
  local name="$1"; shift
  if "$@"; then passed=$((passed + 1)); echo "ok   $name"; else failed=$((failed + 1)); echo "FAIL $name"; fi
}
svc_field() { "$K" --kubeconfig "$1/kubeconfig" get svc "$2" -o "jsonpath=$3"; }
up() { dirs+=("$ROOT/$1"); "$HARNESS_DIR/start.sh" --workdir "$ROOT/$1" --service-cidrs "$2" >/dev/null; }
down() {
  local wd="$ROOT/$1" pids
  pids="$(cat "$wd"/*.pid)"
  "$HARNESS_DIR/stop.sh" "$wd"
  for p in $pids; do ! kill -0 "$p" 2>/dev/null || return 1; done
}
svc_yaml() {
  printf 'apiVersion: v1\nkind: Service\nmetadata: {name: %s}\nspec:\n  ipFamilyPolicy: PreferDualStack\n  selector: {app: %s}\n  ports: [{port: 80}]\n' "$1" "$1"
}
webhook_yaml() {
  cat <<EOF
apiVersion: admissionregistration.k8s.io/v1
kind: MutatingWebhookConfiguration
metadata: {name: smoke}
webhooks:
- name: services.smoke.dualstack-webhook.test
  admissionReviewVersions: ["v1"]
  sideEffects: None
  failurePolicy: Fail
  timeoutSeconds: 2
  clientConfig:
    url: https://127.0.0.1:$1/mutate
    caBundle: $(base64 -w0 "$2")
  rules:
  - {apiGroups: [""], apiVersions: ["v1"], operations: ["CREATE"], resources: ["services"]}
EOF
}

# 1. dual-stack, IPv4 primary
up ds 10.96.0.0/16,fd00:10:96::/112
KC=(--kubeconfig "$ROOT/ds/kubeconfig")
check "create service clusterip" "$K" "${KC[@]}" create service clusterip s1 --tcp=80:80
check "s1 is IPv4 single-stack" test "$(svc_field "$ROOT/ds" s1 '{.spec.ipFamilies}')" = '["IPv4"]'
svc_yaml s2 >"$ROOT/s2.yaml"
check "apply PreferDualStack service" "$K" "${KC[@]}" apply -f "$ROOT/s2.yaml"
check "s2 has IPv4+IPv6" test "$(svc_field "$ROOT/ds" s2 '{.spec.ipFamilies}')" = '["IPv4","IPv6"]'
check "s2 has two clusterIPs" test "$(svc_field "$ROOT/ds" s2 '{.spec.clusterIPs[*]}' | wc -w)" = 2
nobody="$(free_port)"
webhook_yaml "$nobody" "$ROOT/ds/pki/ca.crt" >"$ROOT/webhook.yaml"
check "dry-run=server MutatingWebhookConfiguration" "$K" "${KC[@]}" apply --dry-run=server -f "$ROOT/webhook.yaml"
check "no webhook configuration stored by the dry run" \
  test -z "$("$K" "${KC[@]}" get mutatingwebhookconfigurations -o name)"
"$K" "${KC[@]}" apply -f "$ROOT/webhook.yaml" >/dev/null
check "apiserver calls the mutating webhook" \
  bash -c '"$@" 2>&1 | grep -q "failed calling webhook"' _ "$K" "${KC[@]}" create service clusterip s9 --tcp=80:80
check "stop leaves no process (dual-stack)" down ds

# 2. IPv6 primary
up v6 fd00:10:96::/112,10.96.0.0/16
"$K" --kubeconfig "$ROOT/v6/kubeconfig" create service clusterip s1 --tcp=80:80 >/dev/null
check "default family is IPv6" test "$(svc_field "$ROOT/v6" s1 '{.spec.ipFamilies}')" = '["IPv6"]'
check "stop leaves no process (IPv6 primary)" down v6

# 3. single-stack -> dual-stack apiserver restart on the same etcd
up up 10.96.0.0/16
svc_yaml s1 | "$K" --kubeconfig "$ROOT/up/kubeconfig" apply -f - >/dev/null
check "PreferDualStack on single-stack gets IPv4 only" \
  test "$(svc_field "$ROOT/up" s1 '{.spec.ipFamilies}')" = '["IPv4"]'
etcd_pid="$(cat "$ROOT/up/etcd.pid")"
check "restart-apiserver.sh to dual-stack" "$HARNESS_DIR/restart-apiserver.sh" "$ROOT/up" 10.96.0.0/16,fd00:10:96::/112
check "etcd kept across apiserver restart" test "$(cat "$ROOT/up/etcd.pid")" = "$etcd_pid"
check "data kept across apiserver restart" "$K" --kubeconfig "$ROOT/up/kubeconfig" get svc s1 -o name
svc_yaml s2 | "$K" --kubeconfig "$ROOT/up/kubeconfig" apply -f - >/dev/null
check "PreferDualStack after upgrade gets IPv4+IPv6" \
  test "$(svc_field "$ROOT/up" s2 '{.spec.ipFamilies}')" = '["IPv4","IPv6"]'
check "stop leaves no process (upgrade)" down up

echo "smoke: $passed passed, $failed failed"
((failed == 0))
