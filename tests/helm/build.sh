#!/usr/bin/env bash
# Builds helm (helm.sh/helm/v4/cmd/helm at the version pinned in go.mod, a `tool` of this module)
# into $BIN (default /var/cache/dualstack-webhook/bin), with the Go caches of tests/apiserver
# (env.sh). Like tests/apiserver/build.sh, the Go module proxy is the only network step, and the
# build is skipped when go.mod, go.sum, this script and the Go version are unchanged since the last
# successful build (hash kept in $BIN/.stamp-helm). FORCE=1 rebuilds regardless.
set -euo pipefail
HELM_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# shellcheck source=SCRIPTDIR/../apiserver/env.sh
source "$HELM_DIR/../apiserver/env.sh"
cd "$HELM_DIR"

hver="$("$GO" mod edit -json | sed -n '/"Path": "helm.sh\/helm\/v4"/{n;s/.*"Version": "\(v[^"]*\)".*/\1/p}')"
[[ "$hver" =~ ^v4\.[0-9]+\.[0-9]+$ ]] || { echo "build: cannot read helm.sh/helm/v4 version from go.mod" >&2; exit 1; }
# What helm's own Makefile stamps, so `helm version` reports the release instead of "v4.3".
ldflags="-s -w -X helm.sh/helm/v4/internal/version.version=$hver -X helm.sh/helm/v4/internal/version.gitTreeState=clean"

stamp="$BIN/.stamp-helm"
want="$({ "$GO" version; echo "$ldflags"; cat go.mod go.sum build.sh; } | sha256sum | cut -d' ' -f1)"
if [[ "${FORCE:-0}" != 1 && -f "$stamp" && "$(cat "$stamp")" == "$want" && -x "$BIN/helm" ]]; then
  echo "build: $BIN/helm up to date (helm.sh/helm/v4 $hver)" >&2
  exit 0
fi

mkdir -p "$BIN"
rm -f "$stamp"
echo "build: building helm (helm.sh/helm/v4 $hver) into $BIN" >&2
# The machine is shared with Rust compiles: stay out of their way.
nice -n 19 "$GO" mod download
CGO_ENABLED=0 nice -n 19 "$GO" build -trimpath -ldflags "$ldflags" -o "$BIN/helm" helm.sh/helm/v4/cmd/helm
echo "$want" > "$stamp"
echo "build: done" >&2
