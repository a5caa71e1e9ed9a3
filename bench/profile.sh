#!/usr/bin/env bash
# Instruction counts per request (valgrind callgrind: deterministic, unlike wall time on a shared
# machine) for the release webhook and the floor server, each serving N=5000 requests of
# bench/data/review-typical.json over HTTP/1.1 (one connection; PROTOCOL=h2: HTTP/2, 8 streams) after a
# 200-request warm-up.
# Prints Ir per request for both and leaves the callgrind files in $OUT (callgrind_annotate them).
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
target=${CARGO_TARGET_DIR:-$root/target}
OUT=${OUT:-$(mktemp -d)}
N=${N:-5000}
case ${PROTOCOL:-http/1.1} in
  http/1.1) flags=(--h1 -c 1 -m 1) ;;
  h2) flags=(-c 1 -m 8) ;;
  *) echo "profile: PROTOCOL is http/1.1 or h2" >&2; exit 2 ;;
esac
review=$root/bench/data/review-typical.json
# --force: $OUT may be a directory an earlier run left (OUT=... bench/profile.sh).
"$target/release/dualstack-webhook" certs --out "$OUT/certs" --force >/dev/null

profile() { # name port cmd...
  local name=$1 port=$2 pid
  shift 2
  TOKIO_WORKER_THREADS=1 valgrind --tool=callgrind --callgrind-out-file="$OUT/$name.out" "$@" 2>"$OUT/$name.log" &
  pid=$!
  for _ in $(seq 1 200); do { exec 3<>"/dev/tcp/127.0.0.1/$port"; } 2>/dev/null && break; sleep 0.1; done
  exec 3<&-
  h2load -n 200 "${flags[@]}" -d "$review" "https://127.0.0.1:$port/mutate" >/dev/null
  callgrind_control -z "$pid" >/dev/null
  h2load -n "$N" "${flags[@]}" -d "$review" "https://127.0.0.1:$port/mutate" | grep -q "$N succeeded"
  callgrind_control -d "$pid" >/dev/null
  kill -TERM "$pid"; wait "$pid" 2>/dev/null || true
  local ir
  ir=$(callgrind_annotate "$OUT/$name.out.1" 2>/dev/null | awk '/PROGRAM TOTALS/ { gsub(",", "", $1); print $1 }')
  echo "$name: $((ir / N)) Ir/request ($OUT/$name.out.1)"
}
profile webhook 19543 "$target/release/dualstack-webhook" serve --listen 127.0.0.1:19543 \
  --admin-listen 127.0.0.1:19580 --tls-cert "$OUT/certs/tls.crt" --tls-key "$OUT/certs/tls.key" \
  --policy "$root/manifests/policy.yaml" --service-cidrs 10.96.0.0/16,fd00:10:96::/112 \
  --shutdown-delay 0
profile floor 19544 "$target/release/examples/floor" --listen 127.0.0.1:19544 \
  --tls-cert "$OUT/certs/tls.crt" --tls-key "$OUT/certs/tls.key"
