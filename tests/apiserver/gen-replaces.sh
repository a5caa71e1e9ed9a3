#!/usr/bin/env bash
# k8s.io/kubernetes' go.mod points its staging modules (k8s.io/api, k8s.io/client-go,
# ...) at ./staging/src/..., which only exists inside a kubernetes checkout. A module
# that depends on k8s.io/kubernetes must therefore replace each of them with the
# published staging version (v0.MINOR.PATCH for kubernetes v1.MINOR.PATCH).
# This script derives that list from the downloaded go.mod of the kubernetes version
# required in ./go.mod (or $1) and writes the replaces into ./go.mod.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/env.sh"
cd "$HARNESS_DIR"

kver="${1:-$("$GO" mod edit -json | sed -n '/"Path": "k8s.io\/kubernetes"/{n;s/.*"Version": "\(v[^"]*\)".*/\1/p}')}"
[[ "$kver" =~ ^v1\.([0-9]+)\.([0-9]+)$ ]] || { echo "gen-replaces: bad kubernetes version '$kver'" >&2; exit 1; }
sver="v0.${BASH_REMATCH[1]}.${BASH_REMATCH[2]}"

gomod="$(nice -n 19 "$GO" mod download -json "k8s.io/kubernetes@$kver" | sed -n 's/.*"GoMod": "\(.*\)".*/\1/p')"
[[ -f "$gomod" ]] || { echo "gen-replaces: no go.mod downloaded for k8s.io/kubernetes@$kver" >&2; exit 1; }

# Lines look like "	k8s.io/api => ./staging/src/k8s.io/api" (inside a replace block)
# or "replace k8s.io/api => ./staging/..." (single line).
mods="$(sed -n 's#^\(replace\)\{0,1\}[[:space:]]*\(k8s\.io/[^[:space:]]*\)[[:space:]]*=>[[:space:]]*\./staging/.*#\2#p' "$gomod" | sort -u)"
[[ -n "$mods" ]] || { echo "gen-replaces: no staging replaces found in $gomod" >&2; exit 1; }

args=()
for m in $mods; do args+=("-replace=$m=$m@$sver"); done
"$GO" mod edit "${args[@]}"
echo "gen-replaces: k8s.io/kubernetes $kver -> $(wc -w <<<"$mods") staging modules replaced at $sver" >&2
