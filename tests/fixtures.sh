#!/usr/bin/env bash
# Curl-based fixture tests: starts the release binary once per cluster shape (tests/fixtures/*.args)
# with freshly generated certificates, posts every tests/fixtures/<cluster>/<endpoint>/<case>.json
# with `curl --cacert` (HTTP/2 for /mutate, HTTP/1.1 for /validate), runs the same body through
# `dualstack-webhook review`, and compares both answers with <case>.expected.json (uid aside; the uid
# echo is checked on its own) or, for bodies that are not reviews, the status and reason in
# <case>.expected.txt. Stops only the processes it started. Prints "N passed, N failed".
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
bin=${DUALSTACK_WEBHOOK_BIN:-$root/target/release/dualstack-webhook}
fixtures=$root/tests/fixtures
work=$(mktemp -d)
pids=()

cleanup() {
  for pid in "${pids[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
  for pid in "${pids[@]}"; do wait "$pid" 2>/dev/null || true; done
  rm -rf "$work"
}
trap cleanup EXIT

for tool in curl jq; do
  command -v "$tool" >/dev/null || { echo "fixtures.sh: $tool is required (apt-get install $tool)" >&2; exit 2; }
done
[[ -x $bin ]] || { echo "fixtures.sh: $bin not built (cargo build --release)" >&2; exit 2; }

free_port() {
  # Below the kernel's ephemeral range: a port in it can be taken at any moment as the local end of
  # an outgoing connection, so "free now" would not last until the server binds it.
  local port lo=10000 hi=30000 eph
  if read -r eph _ </proc/sys/net/ipv4/ip_local_port_range 2>/dev/null && ((eph > 12000)); then hi=$eph; fi
  for _ in $(seq 1 100); do
    port=$((lo + RANDOM % (hi - lo)))
    if ! (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then echo "$port"; return; fi
  done
  echo "fixtures.sh: no free port found" >&2; exit 2
}

"$bin" certs --out "$work/certs" >/dev/null

# Normalises an answer: no uid, the patch decoded from base64 into JSON.
normalise='del(.response.uid) | if .response.patch then .response.patch |= (@base64d | fromjson) else . end'

passed=0 failed=0
fail() { failed=$((failed + 1)); echo "FAIL $1: $2" >&2; }

for args_file in "$fixtures"/*.args; do
  cluster=$(basename "$args_file" .args)
  mapfile -t cluster_args < "$args_file"
  port=$(free_port) admin=$(free_port)
  "$bin" serve --listen "127.0.0.1:$port" --admin-listen "127.0.0.1:$admin" \
    --tls-cert "$work/certs/tls.crt" --tls-key "$work/certs/tls.key" \
    --policy "$fixtures/policy.yaml" "${cluster_args[@]}" 2>"$work/$cluster.log" &
  pids+=($!)
  for _ in $(seq 1 100); do
    curl -sf "http://127.0.0.1:$admin/readyz" >/dev/null 2>&1 && break
    sleep 0.1
  done
  curl -sf "http://127.0.0.1:$admin/readyz" >/dev/null || { cat "$work/$cluster.log" >&2; echo "fixtures.sh: $cluster server not ready" >&2; exit 1; }

  for request in "$fixtures/$cluster"/*/*.json; do
    [[ $request == *.expected.json ]] && continue
    endpoint=$(basename "$(dirname "$request")")
    case_name="$cluster/$endpoint/$(basename "$request" .json)"
    expected_json=${request%.json}.expected.json
    expected_txt=${request%.json}.expected.txt
    http=--http2; [[ $endpoint == validate ]] && http=--http1.1
    status=$(curl -sS "$http" --cacert "$work/certs/ca.crt" -H 'Content-Type: application/json' \
      --data-binary "@$request" -o "$work/curl.out" -w '%{http_code}' "https://localhost:$port/$endpoint") || status=curl-error
    "$bin" review --policy "$fixtures/policy.yaml" --endpoint "$endpoint" "${cluster_args[@]}" \
      < "$request" > "$work/review.out" 2> "$work/review.err" && review_rc=0 || review_rc=$?

    if [[ -f $expected_txt ]]; then
      want_status=$(sed -n 1p "$expected_txt") want_reason=$(sed -n 2p "$expected_txt")
      [[ $status == "$want_status" ]] || { fail "$case_name" "curl: HTTP $status, want $want_status"; continue; }
      grep -qF -- "$want_reason" "$work/curl.out" || { fail "$case_name" "curl: reason $(cat "$work/curl.out")"; continue; }
      [[ $review_rc != 0 ]] && grep -qF -- "$want_reason" "$work/review.err" \
        || { fail "$case_name" "review: exit $review_rc, stderr $(cat "$work/review.err")"; continue; }
      passed=$((passed + 1)); continue
    fi

    [[ $status == 200 ]] || { fail "$case_name" "curl: HTTP $status $(head -c 300 "$work/curl.out")"; continue; }
    [[ $review_rc == 0 ]] || { fail "$case_name" "review: exit $review_rc $(cat "$work/review.err")"; continue; }
    uid=$(jq -r .request.uid "$request")
    for answer in curl review; do
      got_uid=$(jq -r .response.uid "$work/$answer.out")
      [[ $got_uid == "$uid" ]] || { fail "$case_name" "$answer: uid $got_uid, want $uid"; continue 2; }
      jq -e '.response.patch == null or (.response.patch | type == "string")' "$work/$answer.out" >/dev/null \
        || { fail "$case_name" "$answer: patch is not a base64 string"; continue 2; }
      if ! diff <(jq -S "$normalise" "$work/$answer.out") <(jq -S 'del(.response.uid)' "$expected_json") > "$work/diff"; then
        fail "$case_name" "$answer answer differs:"; cat "$work/diff" >&2; continue 2
      fi
    done
    passed=$((passed + 1))
  done
done

# The README's first command: `serve --dev` on the embedded default (certificates generated into
# ./certs, the example policy), answering the curl line it prints.
mkdir -p "$work/dev"
port=$(free_port) admin=$(free_port)
(cd "$work/dev" && exec "$bin" serve --dev --listen "127.0.0.1:$port" --admin-listen "127.0.0.1:$admin") 2>"$work/dev.log" &
pids+=($!)
for _ in $(seq 1 100); do curl -sf "http://127.0.0.1:$admin/readyz" >/dev/null 2>&1 && break; sleep 0.1; done
dev_answer=$(curl -sS --cacert "$work/dev/certs/ca.crt" -H 'Content-Type: application/json' \
  --data "@$fixtures/dual-v4/mutate/create-clusterip-defaults.json" "https://localhost:$port/mutate" 2>&1 || true)
if grep -q 'curl --cacert certs/ca.crt' "$work/dev.log" \
  && jq -e '.response.patchType == "JSONPatch" and .response.allowed' <<<"$dev_answer" >/dev/null 2>&1; then
  passed=$((passed + 1))
else
  fail "serve --dev" "answer: $dev_answer; log: $(cat "$work/dev.log")"
fi

echo "fixtures: $passed passed, $failed failed"
[[ $failed == 0 ]]
