#!/usr/bin/env bash
# stop.sh WORKDIR: stops the kube-apiserver and etcd that start.sh recorded in
# WORKDIR (TERM, up to STOP_TIMEOUT=20 s, then KILL). Touches no other process.
# Set CLEAN=1 to also delete WORKDIR.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

[[ $# -eq 1 ]] || die "usage: stop.sh WORKDIR"
[[ -d "$1" ]] || die "no such work dir: $1"
WORKDIR="$(cd "$1" && pwd -P)"

stop_pidfile "$WORKDIR" kube-apiserver
stop_pidfile "$WORKDIR" etcd
if [[ "${CLEAN:-0}" == 1 ]]; then
  rm -rf -- "$WORKDIR"
fi
