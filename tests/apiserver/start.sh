#!/usr/bin/env bash
# Starts a throwaway etcd + kube-apiserver on 127.0.0.1 for the end-to-end tests.
#
#   start.sh [--workdir DIR] [--service-cidrs CIDRS] [--etcd-port N]
#            [--etcd-peer-port N] [--apiserver-port N]
#
# Each option also reads from the environment: WORKDIR, SERVICE_CIDRS, ETCD_PORT,
# ETCD_PEER_PORT, APISERVER_PORT (ports default to free ones picked at runtime).
# Other knobs: READY_TIMEOUT (s, default 60), BIN, SKIP_BUILD=1, ADMISSION_PLUGINS,
# DISABLE_ADMISSION_PLUGINS, APISERVER_EXTRA_ARGS.
#
# Leaves in WORKDIR: kubeconfig, env (sourceable: KUBECONFIG, APISERVER_URL,
# ETCD_URL, SERVICE_CIDRS, ...), pki/, etcd/ (data), logs/, etcd.pid,
# kube-apiserver.pid. Prints WORKDIR on stdout. Stop with stop.sh WORKDIR.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

WORKDIR="${WORKDIR:-}"
SERVICE_CIDRS="${SERVICE_CIDRS:-10.96.0.0/16,fd00:10:96::/112}"
ETCD_PORT="${ETCD_PORT:-}"
ETCD_PEER_PORT="${ETCD_PEER_PORT:-}"
APISERVER_PORT="${APISERVER_PORT:-}"
while (($#)); do
  case "$1" in
    --workdir) WORKDIR="$2"; shift 2 ;;
    --service-cidrs) SERVICE_CIDRS="$2"; shift 2 ;;
    --etcd-port) ETCD_PORT="$2"; shift 2 ;;
    --etcd-peer-port) ETCD_PEER_PORT="$2"; shift 2 ;;
    --apiserver-port) APISERVER_PORT="$2"; shift 2 ;;
    -h | --help) sed -n '2,15p' "$0"; exit 0 ;;
    *) die "unknown argument: $1 (see --help)" ;;
  esac
done

[[ "${SKIP_BUILD:-0}" == 1 ]] || "$HARNESS_DIR/build.sh"
for b in etcd kube-apiserver kubectl; do [[ -x "$BIN/$b" ]] || die "$BIN/$b missing: run build.sh"; done

if [[ -z "$WORKDIR" ]]; then
  WORKDIR="$(mktemp -d "${TMPDIR:-/tmp}/dsw-apiserver.XXXXXX")"
fi
mkdir -p "$WORKDIR"
WORKDIR="$(cd "$WORKDIR" && pwd -P)"
for p in etcd kube-apiserver; do
  pid_is_ours "$WORKDIR" "$WORKDIR/$p.pid" && die "$p already running for $WORKDIR (stop.sh $WORKDIR first)"
done
[[ -e "$WORKDIR/etcd" ]] && die "$WORKDIR/etcd exists: use a fresh work dir (or restart-apiserver.sh to keep the data)"
mkdir -p "$WORKDIR/logs" "$WORKDIR/pki"

# Anything this script started is stopped again if it fails part way.
trap 'rc=$?; if ((rc)); then log "start failed, stopping what was started"; stop_pidfile "$WORKDIR" kube-apiserver; stop_pidfile "$WORKDIR" etcd; fi' EXIT

ETCD_PORT="${ETCD_PORT:-$(free_port)}"
ETCD_PEER_PORT="${ETCD_PEER_PORT:-$(free_port)}"
APISERVER_PORT="${APISERVER_PORT:-$(free_port)}"
[[ "$ETCD_PORT" != "$ETCD_PEER_PORT" && "$ETCD_PORT" != "$APISERVER_PORT" && "$ETCD_PEER_PORT" != "$APISERVER_PORT" ]] \
  || die "port collision: etcd $ETCD_PORT, peer $ETCD_PEER_PORT, apiserver $APISERVER_PORT (retry)"
ETCD_URL="http://127.0.0.1:$ETCD_PORT"

log "work dir $WORKDIR"
make_ca "$WORKDIR/pki"
make_serving_cert "$WORKDIR/pki" "$SERVICE_CIDRS"

cat >"$WORKDIR/env" <<EOF
WORKDIR=$WORKDIR
BIN=$BIN
KUBECONFIG=$WORKDIR/kubeconfig
APISERVER_URL=https://127.0.0.1:$APISERVER_PORT
APISERVER_PORT=$APISERVER_PORT
ETCD_URL=$ETCD_URL
ETCD_PORT=$ETCD_PORT
ETCD_PEER_PORT=$ETCD_PEER_PORT
SERVICE_CIDRS=$SERVICE_CIDRS
EOF

cat >"$WORKDIR/kubeconfig" <<EOF
apiVersion: v1
kind: Config
clusters:
- name: e2e
  cluster:
    server: https://127.0.0.1:$APISERVER_PORT
    certificate-authority: $WORKDIR/pki/ca.crt
users:
- name: admin
  user:
    client-certificate: $WORKDIR/pki/admin.crt
    client-key: $WORKDIR/pki/admin.key
contexts:
- name: e2e
  context:
    cluster: e2e
    user: admin
current-context: e2e
EOF

# etcd: single member, plain HTTP on loopback only. No fsync: the data is thrown
# away and the disk is shared with compiles.
log "starting etcd on $ETCD_URL"
setsid "$BIN/etcd" \
  --name=e2e \
  --data-dir="$WORKDIR/etcd" \
  --listen-client-urls="$ETCD_URL" \
  --advertise-client-urls="$ETCD_URL" \
  --listen-peer-urls="http://127.0.0.1:$ETCD_PEER_PORT" \
  --initial-advertise-peer-urls="http://127.0.0.1:$ETCD_PEER_PORT" \
  --initial-cluster="e2e=http://127.0.0.1:$ETCD_PEER_PORT" \
  --log-level=warn \
  --unsafe-no-fsync=true \
  </dev/null >>"$WORKDIR/logs/etcd.log" 2>&1 &
echo $! >"$WORKDIR/etcd.pid"
wait_until "$WORKDIR" etcd "${READY_TIMEOUT:-60}" curl -fsS --max-time 2 "$ETCD_URL/health"
log "etcd ready (pid $(cat "$WORKDIR/etcd.pid"))"

start_apiserver "$WORKDIR"

trap - EXIT
echo "$WORKDIR"
