# shellcheck shell=bash
# Shared settings for the apiserver test harness; sourced by the other scripts.
# Every value can be overridden from the environment.
HARNESS_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
DSW_CACHE="${DSW_CACHE:-/var/cache/dualstack-webhook}"
export GOMODCACHE="${GOMODCACHE:-$DSW_CACHE/gomod}"
export GOCACHE="${GOCACHE:-$DSW_CACHE/gobuild}"
export GOFLAGS="${GOFLAGS:--mod=mod}"
# The Go toolchain is pinned by go.mod; never let it download another one.
export GOTOOLCHAIN="${GOTOOLCHAIN:-local}"
GO="${GO:-$(command -v go || echo /usr/local/go/bin/go)}"
BIN="${BIN:-$DSW_CACHE/bin}"
