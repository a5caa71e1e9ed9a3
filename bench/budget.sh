#!/usr/bin/env bash
# The throughput budget (`make bench-budget`): how much work per request a server on this stack can
# add and keep a given share of the floor's throughput. It runs the floor server (examples/floor.rs)
# several times side by side, each copy busy-looping WORK_US microseconds a request before it
# answers (`--work-us`), drives each to saturation with h2load exactly as `bench/run.sh` does, and
# reports each copy's throughput as a share of the plain floor's, measured in the same rounds, and
# the webhook's next to them (the same review, POST /mutate, as in `bench/run.sh`). Reading: the
# webhook adds about as much as the copy whose share it matches, and the work that a share of the
# floor (0.80, say) allows is read off the table.
# Writes bench/results/budget.md (and budget.tsv). Stops only what it started.
#
# Knobs (environment): WORK_US="0 1 2 3 4 5" (0 must be first: the floor itself) REPEATS=5
# SAT_DURATION=3 SERVER_CPU=1 CLIENT_CPU=0 WORKERS=1 CLIENTS=4 STREAMS=16 BUILD=1.
set -euo pipefail

WORK_US=${WORK_US:-"0 1 2 3 4 5"}
REPEATS=${REPEATS:-5}
SAT_DURATION=${SAT_DURATION:-3}

[[ ${WORK_US%% *} == 0 ]] || { echo "bench-budget: WORK_US must start with 0 (the floor)" >&2; exit 2; }

# shellcheck source=bench/common.sh
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"
need_tools h2load:nghttp2-client taskset:util-linux

# One floor per amount of work, and the webhook, all pinned to the server CPU (only the one under
# load runs).
declare -A pid
declare -A port
for us in $WORK_US; do
  port[$us]=$(free_port)
  pin "$floor" --listen "127.0.0.1:${port[$us]}" \
    --tls-cert "$work/certs/tls.crt" --tls-key "$work/certs/tls.key" --work-us "$us" &
  pid[$us]=$!
  pids+=("${pid[$us]}")
  listening "${port[$us]}"
done
port[webhook]=$(free_port)
pin "$webhook" serve --listen "127.0.0.1:${port[webhook]}" \
  --admin-listen "127.0.0.1:$(free_port)" --tls-cert "$work/certs/tls.crt" \
  --tls-key "$work/certs/tls.key" --policy "$policy" --service-cidrs "$cidrs" 2>"$work/webhook.log" &
pid[webhook]=$!
pids+=("${pid[webhook]}")
listening "${port[webhook]}"
servers="$WORK_US webhook"

h2() { taskset -c "$CLIENT_CPU" h2load -t 1 -d "$review" -H 'content-type: application/json' -c "$CLIENTS" -m "$STREAMS" "$@"; }
for us in $servers; do h2 -n 5000 "https://127.0.0.1:${port[$us]}/mutate" >/dev/null; done

# Each round drives every server once to saturation; the server's CPU time over the run divided
# by the requests it answered is its CPU per request.
raw=$work/budget.tsv
printf 'server\trepeat\treq_per_s\tcpu_us\n' >"$raw"
for r in $(seq 1 "$REPEATS"); do
  for us in $servers; do
    read -r u0 s0 t0 < <(cpu_now "${pid[$us]}")
    res=$(h2 -D "$SAT_DURATION" --warm-up-time 1 "https://127.0.0.1:${port[$us]}/mutate")
    read -r u1 s1 t1 < <(cpu_now "${pid[$us]}")
    rps=$(awk '/^finished in/ { gsub(",", ""); print $4 }' <<<"$res")
    cpu=$(awk -v c=$((u1 + s1 - u0 - s0)) -v hz="$ticks" -v a="$t0" -v b="$t1" -v rps="$rps" \
      'BEGIN { printf "%.1f", c / hz / (b - a) * 1e6 / rps }')
    printf '%s\t%s\t%s\t%s\n' "$us" "$r" "$rps" "$cpu" >>"$raw"
    echo "budget: $us, #$r: $rps req/s, $cpu µs of CPU a request" >&2
  done
done

med() { awk -F'\t' -v s="$1" -v col="$2" '$1 == s { print $col }' "$raw" | median; }
mkdir -p "$out"
cp "$raw" "$out/budget.tsv"
base=$(med 0 3) base_cpu=$(med 0 4)
{
  echo "| server | throughput at saturation (req/s) | share of the floor's | server CPU per request (µs) | added to the floor's (µs) |"
  echo "|---|---:|---:|---:|---:|"
  for us in $servers; do
    m=$(med "$us" 3) c=$(med "$us" 4)
    label="floor + $us µs of busy work"
    [[ $us == 0 ]] && label="floor"
    [[ $us == webhook ]] && label="the webhook"
    echo "| $label | ${m%.*} | $(awk -v a="$m" -v b="$base" 'BEGIN { printf "%.2f", a / b }') | $c | $(awk -v a="$c" -v b="$base_cpu" 'BEGIN { printf "%+.1f", a - b }') |"
  done
  echo
  # Each round measures every amount once; the shares round by round show the host's noise.
  awk -F'\t' 'NR > 1 { rps[$1, $2] = $3; if (!($1 in seen)) { seen[$1] = 1; order[++n] = $1 } }
    END { for (i = 2; i <= n; i++) { printf "%s, share round by round:", (order[i] == "webhook" ? "webhook" : "+" order[i] " µs")
      for (r = 1; (order[i], r) in rps; r++) printf "%s %.2f", (r > 1 ? "," : ""), rps[order[i], r] / rps[0, r]
      print "" } }' "$raw" | sed 's/$/  /'
  echo
  echo "Machine: $(nproc) × $(awk -F': ' '/^model name/ { print $2; exit }' /proc/cpuinfo), $(uname -sr); $(date -u +%Y-%m-%d). Load average at the end: $(cut -d' ' -f1-3 /proc/loadavg)."
  echo "Command: \`make bench-budget\` (WORK_US=\"$WORK_US\" REPEATS=$REPEATS SAT_DURATION=${SAT_DURATION}s; floors on CPU $SERVER_CPU with $WORKERS tokio worker(s), h2load on CPU $CLIENT_CPU; $CLIENTS connections × $STREAMS streams). Medians of $REPEATS interleaved rounds."
} >"$out/budget.md"
cat "$out/budget.md"
echo "bench-budget: wrote $out/budget.md, budget.tsv" >&2
