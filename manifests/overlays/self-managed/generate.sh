#!/usr/bin/env bash
# generate.sh [--rotate | --finish]: the serving certificate of the self-managed overlay.
#
#   (no flag)  certs/ (ca.crt, ca.key, tls.crt, tls.key from `dualstack-webhook certs`) unless it
#              exists already, then certs/ca-bundle.crt: the CA the Secret's ca.crt carries and the
#              pods register as the webhooks' caBundle (certs/ca.crt, followed by
#              certs/previous-ca.crt while a rotation is in progress). Idempotent.
#   --rotate   keeps the current CA as certs/previous-ca.crt and makes a new CA and certificate;
#              the bundle trusts both, so the API server accepts the old certificate until the
#              pods serve the new one.
#   --finish   drops certs/previous-ca.crt: the bundle trusts the new CA only.
# Then: kubectl apply -k "$(dirname "$0")" (the Secret is updated in place; the pods reload the
# certificate and re-register the bundle). certs/ is git-ignored; ca.key never leaves this
# directory (the Secret carries tls.crt, tls.key and ca.crt only). Keys are mode 0600.
#
# The binary: $DUALSTACK_WEBHOOK, else dualstack-webhook on PATH, else the repository's
# target/release (or $CARGO_TARGET_DIR/release) build. NAMESPACE: the webhook's namespace (default
# dualstack-webhook), for the certificate's names (dualstack-webhook.NAMESPACE.svc, ...); change it
# only together with the overlay's namespace. Extra SANs: DNS=name1,name2 IP=addr1,...
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(cd "$HERE/../../.." && pwd)"
CERTS="$HERE/certs"
NAMESPACE="${NAMESPACE:-dualstack-webhook}"
die() { echo "generate.sh: $*" >&2; exit 1; }

mode="${1:-}"
case "$mode" in "" | --rotate | --finish) ;; *) die "usage: generate.sh [--rotate | --finish]" ;; esac

bin="${DUALSTACK_WEBHOOK:-}"
if [[ -z "$bin" ]]; then
  for candidate in "$(command -v dualstack-webhook || true)" \
    "${CARGO_TARGET_DIR:-$ROOT/target}/release/dualstack-webhook"; do
    if [[ -n "$candidate" && -x "$candidate" ]]; then bin="$candidate"; break; fi
  done
fi

certs() { # [--force]: replace the CA in certs/ (without it, an existing CA is an error)
  [[ -n "$bin" && -x "$bin" ]] || die "no dualstack-webhook binary (set DUALSTACK_WEBHOOK or run: cargo build --release)"
  local args=(certs --out "$CERTS" --namespace "$NAMESPACE" "$@") n
  IFS=, read -r -a dns <<<"${DNS:-}"
  IFS=, read -r -a ips <<<"${IP:-}"
  for n in "${dns[@]}"; do [[ -n "$n" ]] && args+=(--dns "$n"); done
  for n in "${ips[@]}"; do [[ -n "$n" ]] && args+=(--ip "$n"); done
  "$bin" "${args[@]}" >/dev/null
  chmod 600 "$CERTS/ca.key" "$CERTS/tls.key"
}

case "$mode" in
  --rotate)
    [[ -f "$CERTS/ca.crt" ]] || die "nothing to rotate: run generate.sh first"
    cp "$CERTS/ca.crt" "$CERTS/previous-ca.crt.new"
    certs --force
    mv "$CERTS/previous-ca.crt.new" "$CERTS/previous-ca.crt"
    ;;
  --finish) rm -f "$CERTS/previous-ca.crt" ;;
  *) [[ -f "$CERTS/tls.crt" && -f "$CERTS/tls.key" && -f "$CERTS/ca.crt" ]] || certs ;;
esac

# The new CA first: the order does not matter to the API server (any CA of the bundle may verify),
# but it keeps the current CA where a reader looks first.
cas=("$CERTS/ca.crt")
[[ -f "$CERTS/previous-ca.crt" ]] && cas+=("$CERTS/previous-ca.crt")
cat "${cas[@]}" >"$CERTS/ca-bundle.crt.new"
mv "$CERTS/ca-bundle.crt.new" "$CERTS/ca-bundle.crt"
echo "generate.sh: $CERTS ready (ca-bundle.crt from ${cas[*]##*/}; namespace $NAMESPACE);" \
  "now: kubectl apply -k $HERE" >&2
