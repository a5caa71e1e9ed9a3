#!/usr/bin/env bash
# restart-apiserver.sh WORKDIR CIDRS: restarts only the kube-apiserver of a harness
# started by start.sh, with --service-cluster-ip-range=CIDRS, on the same etcd,
# port and PKI (the serving cert is re-issued for the new ranges' first IPs).
# For scenarios such as upgrading a single-stack cluster to dual-stack.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

[[ $# -eq 2 ]] || die "usage: restart-apiserver.sh WORKDIR CIDRS"
[[ -f "$1/env" ]] || die "$1 is not a work dir made by start.sh"
WORKDIR="$(cd "$1" && pwd -P)"
CIDRS="$2"

pid_is_ours "$WORKDIR" "$WORKDIR/etcd.pid" || die "etcd of $WORKDIR is not running"
stop_pidfile "$WORKDIR" kube-apiserver

make_serving_cert "$WORKDIR/pki" "$CIDRS"
sed -i "s#^SERVICE_CIDRS=.*#SERVICE_CIDRS=$CIDRS#" "$WORKDIR/env"
echo "----- restart with service CIDRs $CIDRS -----" >>"$WORKDIR/logs/kube-apiserver.log"
# A kube-apiserver that does not get ready is not left behind; etcd is kept.
trap 'rc=$?; if ((rc)); then stop_pidfile "$WORKDIR" kube-apiserver; fi' EXIT
start_apiserver "$WORKDIR"
trap - EXIT
