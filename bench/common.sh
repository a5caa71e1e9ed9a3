# shellcheck shell=bash disable=SC2034,SC2154
# What the load harnesses share (sourced by bench/run.sh and bench/compare.sh): where things are,
# the placement and saturation knobs, a work directory and the servers started, both removed on
# exit; the tools, installed with apt-get when missing; the release build; ports, medians, CPU time.

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
target=${CARGO_TARGET_DIR:-$root/target}
out=$root/bench/results
review=$root/bench/data/review-typical.json
policy=$root/manifests/policy.yaml
cidrs=10.96.0.0/16,fd00:10:96::/112

# Servers on SERVER_CPU with WORKERS tokio worker threads, the clients (h2load, examples/pace.rs) on
# CLIENT_CPU (so the client does not steal the server's core); saturation with CLIENTS connections x
# STREAMS streams; fixed rates over LAT_CLIENTS connections.
SERVER_CPU=${SERVER_CPU:-1}
CLIENT_CPU=${CLIENT_CPU:-0}
WORKERS=${WORKERS:-1}
CLIENTS=${CLIENTS:-4}
STREAMS=${STREAMS:-16}
LAT_CLIENTS=${LAT_CLIENTS:-10}
BUILD=${BUILD:-1}

# The protocol h2load speaks at saturation: HTTP/1.1 by default, as kube-apiserver calls a webhook
# behind a Service or at any URL but a loopback one (k8s.io/apiserver v0.37.2,
# pkg/util/webhook/client.go: `cfg.NextProtos = []string{"http/1.1"}`, a workaround for HTTP/2 not
# spreading requests over a Service's pods); PROTOCOL=h2 for a webhook at a loopback URL, the one
# case the API server uses HTTP/2 for. Over HTTP/1.1 a connection carries one request at a time
# (Go's client never pipelines): saturation's CLIENTS x STREAMS requests in flight take as many
# connections. The fixed rates are always over HTTP/1.1 (`paced`).
PROTOCOL=${PROTOCOL:-http/1.1}
case $PROTOCOL in
  http/1.1) load_flags=(--h1) sat_conns=$((CLIENTS * STREAMS)) sat_streams=1 ;;
  h2) load_flags=() sat_conns=$CLIENTS sat_streams=$STREAMS ;;
  *) echo "bench: PROTOCOL is http/1.1 or h2, not '$PROTOCOL'" >&2; exit 2 ;;
esac

# Runs a server on SERVER_CPU; `exec`, so that the background job's pid is the server's own (for
# kill and /proc/PID/stat).
pin() { TOKIO_WORKER_THREADS=$WORKERS exec taskset -c "$SERVER_CPU" "$@"; }

work=$(mktemp -d)
pids=()
cleanup() {
  for pid in "${pids[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
  for pid in "${pids[@]}"; do wait "$pid" 2>/dev/null || true; done
  rm -rf "$work"
}
trap cleanup EXIT

# Installs the Debian packages of the commands given as `command:package` that are missing.
need_tools() {
  local need=() pair
  for pair in "$@"; do command -v "${pair%%:*}" >/dev/null || need+=("${pair#*:}"); done
  if ((${#need[@]})); then
    echo "bench: installing ${need[*]}" >&2
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}" >/dev/null
  fi
}

if [[ $BUILD == 1 ]]; then
  (cd "$root" && nice cargo build --release --locked --bin dualstack-webhook --example floor --example pace)
fi
# Fresh copies of the binaries, run from the work directory: on the project's VM the same bytes ran up
# to 1.6x slower (p50) from a file that had sat unused for minutes than from a new copy of it
# (bench/README.md, "Fresh copies"), so every run starts its servers from files written alike.
fresh() { cp "$1" "$work/$2" && echo "$work/$2"; }
webhook=$(fresh "$target/release/dualstack-webhook" webhook-bin)
floor=$(fresh "$target/release/examples/floor" floor-bin)
pace=$(fresh "$target/release/examples/pace" pace-bin)
"$webhook" certs --out "$work/certs" >/dev/null

free_port() {
  local port
  for _ in $(seq 1 100); do
    port=$((20000 + RANDOM % 40000))
    if ! (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then echo "$port"; return; fi
  done
  echo "bench: no free port" >&2; exit 2
}

# Waits (up to 10 s) until something accepts connections on 127.0.0.1:$1.
listening() {
  for _ in $(seq 1 200); do { exec 3<>"/dev/tcp/127.0.0.1/$1"; } 2>/dev/null && break; sleep 0.05; done
  exec 3<&-
}

median() { sort -g | awk '{ v[NR] = $1 } END { if (NR == 0) print "nan"; else if (NR % 2) print v[(NR + 1) / 2]; else print (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }

# Process $1's user and system CPU time so far, in clock ticks (fields 14 and 15 of
# /proc/PID/stat; the command names here have no spaces), and the wall clock.
ticks=$(getconf CLK_TCK)
cpu_now() { read -r -a stat <"/proc/$1/stat"; echo "${stat[13]} ${stat[14]} $EPOCHREALTIME"; }

# h2load on CLIENT_CPU with the review, POSTed as JSON, over PROTOCOL.
load() { taskset -c "$CLIENT_CPU" h2load "${load_flags[@]}" -t 1 -d "$review" -H 'content-type: application/json' "$@"; }

# Sends RATE ($1) requests a second to URL ($2) for DURATION seconds, open loop, evenly spaced:
# examples/pace.rs, LAT_CLIENTS connections taking the instants in turn, each warmed up first. Writes
# each latency (µs, from the instant the request was due) to the new file LOG ($3); prints the rate
# reached and the requests answered. Not h2load: its `--rps` sends most requests two to four at once
# (bench/README.md, "Pacing").
paced() {
  local address=${2#https://}
  taskset -c "$CLIENT_CPU" "$pace" --connect "${address%%/*}" --path "/${address#*/}" \
    --ca "$work/certs/ca.crt" --body "$review" --rate "$1" --connections "$LAT_CLIENTS" \
    --seconds "$DURATION" >"$3" 2>"$3.rate" || { cat "$3.rate" >&2; return 1; }
  # pace's summary on stderr: "N answered in S s: R req/s".
  awk '{ print $6, $1 }' "$3.rate"
}

# Drives the server at URL $1 (pid $2) to saturation for SAT_DURATION seconds after 1 s of warm-up,
# CLIENTS connections x STREAMS streams (over HTTP/1.1, as many connections), closed loop. Prints
# its requests a second, the requests that succeeded, how busy its core was (%) and its CPU per
# request (µs) in all, in user and in system time: CPU seconds a second over the run (the warm-up
# second included, at the same rate) divided by requests a second.
saturate() {
  local u0 s0 t0 u1 s1 t1 res rps ok
  read -r u0 s0 t0 < <(cpu_now "$2")
  res=$(load -c "$sat_conns" -m "$sat_streams" -D "$SAT_DURATION" --warm-up-time 1 "$1")
  read -r u1 s1 t1 < <(cpu_now "$2")
  rps=$(awk '/^finished in/ { gsub(",", ""); print $4 }' <<<"$res")
  ok=$(awk '/^requests:/ { print $8 }' <<<"$res")
  awk -v rps="$rps" -v ok="$ok" -v du=$((u1 - u0)) -v ds=$((s1 - s0)) -v hz="$ticks" \
    -v t0="$t0" -v t1="$t1" 'BEGIN {
      u = du / hz / (t1 - t0); s = ds / hz / (t1 - t0)
      printf "%s %s %.0f %.1f %.1f %.1f\n", rps, ok, (u + s) * 100, (u + s) * 1e6 / rps, u * 1e6 / rps, s * 1e6 / rps }'
}
