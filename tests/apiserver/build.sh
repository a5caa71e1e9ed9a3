#!/usr/bin/env bash
# Builds etcd, kube-apiserver and kubectl from the Go modules pinned in go.mod into
# $BIN (default /var/cache/dualstack-webhook/bin). Skips the build when go.mod,
# go.sum, the mains, this script and the Go version are unchanged since the last
# successful build (hash kept in $BIN/.stamp). FORCE=1 rebuilds regardless.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/env.sh"
cd "$HARNESS_DIR"

kver="$("$GO" mod edit -json | sed -n '/"Path": "k8s.io\/kubernetes"/{n;s/.*"Version": "\(v[^"]*\)".*/\1/p}')"
[[ "$kver" =~ ^v1\.([0-9]+)\.[0-9]+$ ]] || { echo "build: cannot read k8s.io/kubernetes version from go.mod" >&2; exit 1; }
kminor="${BASH_REMATCH[1]}"
# What upstream hack/lib/version.sh stamps, so `kubectl version` and the apiserver's
# /version report the real release instead of v0.0.0-master.
ldflags="-s -w"
for pkg in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
  ldflags+=" -X $pkg.gitVersion=$kver -X $pkg.gitMajor=1 -X $pkg.gitMinor=$kminor -X $pkg.gitTreeState=clean"
done

stamp="$BIN/.stamp"
want="$({ "$GO" version; echo "$ldflags"; cat go.mod go.sum build.sh; find cmd -name '*.go' | LC_ALL=C sort | xargs cat; } | sha256sum | cut -d' ' -f1)"
if [[ "${FORCE:-0}" != 1 && -f "$stamp" && "$(cat "$stamp")" == "$want" ]] \
   && [[ -x "$BIN/etcd" && -x "$BIN/kube-apiserver" && -x "$BIN/kubectl" ]]; then
  echo "build: $BIN up to date (k8s.io/kubernetes $kver)" >&2
  exit 0
fi

mkdir -p "$BIN"
rm -f "$stamp"
echo "build: building etcd, kube-apiserver, kubectl (k8s.io/kubernetes $kver) into $BIN" >&2
# The machine is shared with Rust compiles: stay out of their way.
nice -n 19 "$GO" mod download
nice -n 19 "$GO" build -trimpath -ldflags "$ldflags" -o "$BIN/" ./cmd/etcd ./cmd/kube-apiserver ./cmd/kubectl
echo "$want" > "$stamp"
echo "build: done" >&2
