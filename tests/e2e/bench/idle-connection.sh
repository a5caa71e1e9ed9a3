#!/usr/bin/env bash
# tests/e2e/bench/idle-connection.sh [ROUNDS]: what a Service write's webhook calls cost when
# kube-apiserver must open a new connection to the webhook, next to when it reuses one.
#
# kube-apiserver speaks HTTP/1.1 to a webhook in a cluster (a Service reference, or any URL that is
# not loopback: k8s.io/apiserver pkg/util/webhook/client.go); DISABLE_HTTP2=1 (client-go's switch,
# the default here) gives the harness's API server the same at a loopback URL. The webhook keeps an
# idle HTTP/1.1 connection 120 s (`keep_alive_timeout`), past the API server's 90 s, so a write 11 s
# after the previous one reuses it. Until that limit was separate from the 10 s header read timeout,
# such a write opened a new TCP connection and did a full TLS handshake (client-go offers no session
# resumption): the "handshakes" column counts them.
#
# Starts a harness of its own (tests/apiserver, binaries already built), the release webhook with
# the empty policy (tests/e2e/bench/empty-policy.yaml: allowed, no patch) registered without
# conditions, then ROUNDS (default 10) times: a create 0.5 s after the previous write, and one
# 11 s after it. For each create prints the API server's own time in the /mutate and /validate
# calls (deltas of apiserver_admission_webhook_admission_duration_seconds_sum around that one
# write) and the webhook's TLS handshakes so far (its log at debug level); then the medians.
# Stops what it started; KEEP=1 keeps the work dir.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../../.." && pwd)"
HARNESS="$ROOT/tests/apiserver"
# shellcheck source-path=SCRIPTDIR source=../../apiserver/lib.sh
source "$HARNESS/lib.sh" # log/die/free_port/stop_pidfile/wait_until, BIN
ROUNDS="${1:-10}"
WEBHOOK_BIN="${WEBHOOK_BIN:-${CARGO_TARGET_DIR:-$ROOT/target}/release/dualstack-webhook}"
[[ -x "$WEBHOOK_BIN" ]] || die "$WEBHOOK_BIN missing: cargo build --release"

WD="$(mktemp -d "${TMPDIR:-/tmp}/dsw-idle.XXXXXX")"
WD="$(cd "$WD" && pwd -P)"
mkdir -p "$WD/logs"
cleanup() {
  local rc=$?
  stop_pidfile "$WD" webhook
  [[ -f "$WD/apiserver/env" ]] && "$HARNESS/stop.sh" "$WD/apiserver" >/dev/null 2>&1
  if ((rc == 0)) && [[ "${KEEP:-0}" != 1 ]]; then rm -rf -- "$WD"; else log "work dir kept: $WD"; fi
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

"$WEBHOOK_BIN" certs --out "$WD/certs" >/dev/null
# Only the API server gets it (kubectl, a client-go client too, would log that it is set).
DISABLE_HTTP2="${DISABLE_HTTP2-1}" SKIP_BUILD=1 "$HARNESS/start.sh" --workdir "$WD/apiserver" >/dev/null
export KUBECONFIG="$WD/apiserver/kubeconfig"
PORT="$(free_port)"
ADMIN="$(free_port)"
RUST_LOG="info,dualstack_webhook::server::https=debug" setsid "$WEBHOOK_BIN" serve \
  --listen "127.0.0.1:$PORT" --admin-listen "127.0.0.1:$ADMIN" \
  --tls-cert "$WD/certs/tls.crt" --tls-key "$WD/certs/tls.key" \
  --policy "$ROOT/tests/e2e/bench/empty-policy.yaml" --service-cidrs 10.96.0.0/16,fd00:10:96::/112 \
  --shutdown-delay 0 </dev/null >>"$WD/logs/webhook.log" 2>&1 &
echo $! >"$WD/webhook.pid"
wait_until "$WD" webhook 30 curl -fsS --max-time 2 "http://127.0.0.1:$ADMIN/readyz"
"$WEBHOOK_BIN" webhook-configurations --name idle --url "https://127.0.0.1:$PORT" \
  --ca-bundle "$WD/certs/ca.crt" | "$BIN/kubectl" apply -f - >/dev/null
"$BIN/kubectl" create namespace idle >/dev/null

# calls: "<mutate seconds> <validate seconds>", the API server's totals for CREATE calls.
calls() {
  "$BIN/kubectl" get --raw /metrics | awk '
    /^apiserver_admission_webhook_admission_duration_seconds_sum\{/ && /operation="CREATE"/ {
      if ($0 ~ /type="admit"/) m += $NF; else v += $NF
    }
    END { printf "%.6f %.6f\n", m, v }'
}
handshakes() { grep -c "tls handshake complete" "$WD/logs/webhook.log" || true; }
created=0
create() {
  created=$((created + 1))
  "$BIN/kubectl" -n idle create service clusterip "s$created" --tcp=80 >/dev/null
}
# Until the API server calls the webhook (configurations reach it through an informer).
for _ in $(seq 100); do
  create
  [[ "$(calls)" != "0.000000 0.000000" ]] && break
  sleep 0.2
done
[[ "$(calls)" != "0.000000 0.000000" ]] || die "the API server never called the webhook"

printf '%-6s %10s %12s %11s\n' gap "mutate ms" "validate ms" handshakes
for _ in $(seq "$ROUNDS"); do
  for gap in 0.5 11; do
    sleep "$gap"
    read -r m0 v0 < <(calls)
    create
    read -r m1 v1 < <(calls)
    awk -v g="${gap}s" -v m0="$m0" -v m1="$m1" -v v0="$v0" -v v1="$v1" -v h="$(handshakes)" \
      'BEGIN { printf "%-6s %10.3f %12.3f %11d\n", g, 1000 * (m1 - m0), 1000 * (v1 - v0), h }' \
      | tee -a "$WD/samples"
  done
done
# median GAP COLUMN: the median of one column of the samples after that gap.
median() {
  awk -v g="$1" -v c="$2" '$1 == g { print $c }' "$WD/samples" | sort -n \
    | awk '{ x[NR] = $1 } END { printf "%.3f", x[int((NR + 1) / 2)] }'
}
echo "medians (ms), $ROUNDS creates each:"
for gap in 0.5s 11s; do
  echo "after $gap: mutate $(median "$gap" 2), validate $(median "$gap" 3)"
done
