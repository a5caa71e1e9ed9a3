#!/usr/bin/env bash
# tests/e2e/run.sh [e2e|bench] [TEST-ARGS...]: the end-to-end driver (make e2e / make bench-e2e).
#
#  1. builds the harness (tests/apiserver/build.sh; cached), the release webhook and the e2e test
#     binary (tests/e2e/main.rs);
#  2. makes the webhook's certificates with `dualstack-webhook certs`, starts etcd + kube-apiserver
#     (dual-stack, IPv4 primary, audit log on) and the webhook on free loopback ports, watching
#     that API server (--watch-cluster), and waits for its /readyz;
#  3. e2e: registers the configurations `serve --register-webhooks` registers, sent to 127.0.0.1
#     (`webhook-configurations --url`; the test binary's setup step), and runs every ignored test
#     except setup/bench, one at a time; bench: the latency benchmark, which registers what it
#     measures itself (tests/e2e/bench.rs).
# Extra arguments go to the test binary (e.g. a name filter). Every wait is bounded; the EXIT trap
# stops exactly the processes this run started (its own pid files, each checked against the
# run's work dir), and deletes the work dir unless the run failed or KEEP=1.
#
# Env: SERVICE_CIDRS (default 10.96.0.0/16,fd00:10:96::/112), E2E_BENCH_N (300), E2E_BENCH_RUNS (3),
# CARGO_TARGET_DIR (default ./target), KEEP=1, E2E_FAILURE_POLICY (override for the main configs),
# E2E_WATCH_CLUSTER (1: the main webhook runs with --watch-cluster, the default; 0: --service-cidrs),
set -euo pipefail
E2E="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(cd "$E2E/../.." && pwd)"
HARNESS="$ROOT/tests/apiserver"
# shellcheck source=../apiserver/lib.sh
source "$HARNESS/lib.sh" # log/die/free_port/pid_is_ours/stop_pidfile/wait_until, BIN, Go caches
log() { echo "e2e: $*" >&2; }

MODE="${1:-e2e}"
[[ $# -gt 0 ]] && shift
[[ "$MODE" == e2e || "$MODE" == bench ]] || die "usage: run.sh [e2e|bench] [TEST-ARGS...]"
SERVICE_CIDRS="${SERVICE_CIDRS:-10.96.0.0/16,fd00:10:96::/112}"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$ROOT/target}"
START=$SECONDS

WD="$(mktemp -d "${TMPDIR:-/tmp}/dsw-e2e.XXXXXX")"
WD="$(cd "$WD" && pwd -P)"
mkdir -p "$WD/logs" "$WD/pids"

cleanup() {
  local rc=$? f d pid
  stop_pidfile "$WD" webhook
  # Webhooks the tests started (their Drop guards stop them; this covers a crashed test binary).
  for f in "$WD"/pids/*.pid; do
    [[ -e "$f" ]] || continue
    if pid_is_ours "$WD" "$f"; then
      pid="$(cat "$f")"
      log "stopping leftover test process $pid ($f)"
      kill -TERM "$pid" 2>/dev/null || true
      for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
      kill -KILL "$pid" 2>/dev/null || true
    fi
    rm -f "$f"
  done
  # Harnesses: the main one and any a test started (each work dir has an env file).
  for d in "$WD"/*/; do
    if [[ -f "$d/env" ]]; then "$HARNESS/stop.sh" "$d" >/dev/null 2>&1 || true; fi
  done
  if ((rc == 0)) && [[ "${KEEP:-0}" != 1 ]]; then
    rm -rf -- "$WD"
  else
    log "work dir kept: $WD (logs in logs/, apiserver/logs/, */webhook.log)"
  fi
  log "finished with exit code $rc after $((SECONDS - START)) s"
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

step() { log "[$((SECONDS - START))s] $*"; }

step "build the harness (cached)"
"$HARNESS/build.sh"

step "build the release webhook and the e2e test binary"
cd "$ROOT"
nice -n 10 cargo build --release --locked
# The test binary is run directly below, so the setup step and the suite share one build.
TEST_BIN="$(nice -n 10 cargo test --locked --test e2e --no-run --message-format=json \
  | grep '"target":{[^}]*"name":"e2e"' | sed -n 's/.*"executable":"\([^"]*\)".*/\1/p' | tail -n 1)"
[[ -x "$TEST_BIN" ]] || die "no e2e test binary found"
WEBHOOK_BIN="$CARGO_TARGET_DIR/release/dualstack-webhook"

step "certificates and the API server ($SERVICE_CIDRS)"
"$WEBHOOK_BIN" certs --out "$WD/webhook-certs" >/dev/null
APISERVER_EXTRA_ARGS="--audit-policy-file=$E2E/audit-policy.yaml --audit-log-path=$WD/audit.log" \
  SKIP_BUILD=1 "$HARNESS/start.sh" --workdir "$WD/apiserver" --service-cidrs "$SERVICE_CIDRS" >/dev/null

# The main webhook learns the service ranges from the API server's "kubernetes" ServiceCIDR and the
# namespace labels from a Namespace watch (--watch-cluster, as in manifests/deployment.yaml);
# E2E_WATCH_CLUSTER=0 gives it --service-cidrs instead (and no namespace labels).
if [[ "${E2E_WATCH_CLUSTER:-1}" == 1 ]]; then
  CLUSTER_ARGS=(--watch-cluster)
else
  CLUSTER_ARGS=(--service-cidrs "$SERVICE_CIDRS")
fi
step "start the webhook (${CLUSTER_ARGS[*]})"
PORT="$(free_port)"
ADMIN_PORT="$(free_port)"
[[ "$PORT" != "$ADMIN_PORT" ]] || ADMIN_PORT="$(free_port)"
KUBECONFIG="$WD/apiserver/kubeconfig" setsid "$WEBHOOK_BIN" serve \
  --listen "127.0.0.1:$PORT" --admin-listen "127.0.0.1:$ADMIN_PORT" \
  --tls-cert "$WD/webhook-certs/tls.crt" --tls-key "$WD/webhook-certs/tls.key" \
  --policy "$E2E/policy.yaml" "${CLUSTER_ARGS[@]}" --reload-interval 1 --shutdown-delay 0 \
  </dev/null >>"$WD/logs/webhook.log" 2>&1 &
echo $! >"$WD/webhook.pid"
# /readyz: certificates and policy loaded, and (with --watch-cluster) both watches listed once.
wait_until "$WD" webhook 30 curl -fsS --max-time 2 "http://127.0.0.1:$ADMIN_PORT/readyz"

export E2E_WORKDIR="$WD"
export E2E_KUBECONFIG="$WD/apiserver/kubeconfig"
export E2E_KUBECTL="$BIN/kubectl"
export E2E_WEBHOOK_BIN="$WEBHOOK_BIN"
export E2E_WEBHOOK_URL="https://127.0.0.1:$PORT"
export E2E_WEBHOOK_ADMIN="127.0.0.1:$ADMIN_PORT"
E2E_WEBHOOK_PID="$(cat "$WD/webhook.pid")"
export E2E_WEBHOOK_PID
export E2E_WEBHOOK_CERTS="$WD/webhook-certs"
export E2E_POLICY="$E2E/policy.yaml"
export E2E_SERVICE_CIDRS="$SERVICE_CIDRS"
export E2E_AUDIT_LOG="$WD/audit.log"
export E2E_APISERVER_WORKDIR="$WD/apiserver"

case "$MODE" in
  e2e)
    step "register the webhook configurations (sent to 127.0.0.1:$PORT)"
    "$TEST_BIN" --ignored --exact setup::register_webhooks --test-threads=1 -q >"$WD/logs/setup.log" 2>&1 \
      || { cat "$WD/logs/setup.log" >&2; die "registering the webhook configurations failed"; }
    step "run the e2e tests"
    # One at a time: the failure-mode and upgrade tests start processes and harnesses of their own.
    "$TEST_BIN" --ignored --test-threads=1 --skip setup:: --skip bench:: "$@"
    ;;
  bench)
    # The benchmark registers each arm's admission objects itself (nothing else is registered).
    # Its webhooks log the accept loop at debug level: one line per TLS handshake (with the
    # ALPN result) and per closed connection, none per request.
    step "run the latency benchmark (E2E_BENCH_RUNS=${E2E_BENCH_RUNS:-3} runs, E2E_BENCH_N=${E2E_BENCH_N:-300})"
    RUST_LOG="info,dualstack_webhook::server::https=debug" \
      "$TEST_BIN" --ignored --exact bench::service_write_latency --nocapture --test-threads=1 "$@"
    ;;
esac
