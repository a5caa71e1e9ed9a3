#!/usr/bin/env bash
# The throughput budget (`make bench-budget`): how much work per request a server on this stack can
# add and keep a given share of the floor's throughput. It runs the floor server (examples/floor.rs)
# several times side by side, each copy busy-looping WORK_US microseconds a request before it
# answers (`--work-us`), drives each to saturation with h2load exactly as `bench/run.sh` does, and
# reports each copy's throughput as a share of the plain floor's (each run paired with a floor
# run just before it), and the webhook's next to them (the same review, POST /mutate, as in
# `bench/run.sh`). Reading: the webhook adds about as much as the copy whose share it matches, and
# the work that a share of the floor (0.80, say) allows is read off the table.
# Writes bench/results/budget.md (and budget.tsv). Stops only what it started.
#
# Knobs (environment): WORK_US="0 0.5 1 ... 6" (0 must be first: the floor itself) REPEATS=5
# SAT_DURATION=2 SERVER_CPU=1 CLIENT_CPU=0 WORKERS=1 CLIENTS=4 STREAMS=16 BUILD=1.
set -euo pipefail

WORK_US=${WORK_US:-"0 0.5 1 1.5 2 2.5 3 4 5 6"}
REPEATS=${REPEATS:-5}
SAT_DURATION=${SAT_DURATION:-2}

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

url() { echo "https://127.0.0.1:${port[$1]}/mutate"; }
for us in $servers; do h2 -n 5000 -c "$CLIENTS" -m "$STREAMS" "$(url "$us")" >/dev/null; done

# Saturation runs (`saturate`), each of a server with work paired with a run of the plain floor
# just before it: the host's load moves throughput by a quarter within minutes, far less between
# two runs seconds apart, so each share is the median of its pairs' ratios.
raw=$work/budget.tsv
printf 'server\trepeat\treq_per_s\tcpu_us\tfloor_req_per_s\tfloor_cpu_us\n' >"$raw"
for r in $(seq 1 "$REPEATS"); do
  for us in ${servers#0 }; do
    read -r frps _ _ fcpu _ < <(saturate "$(url 0)" "${pid[0]}")
    read -r rps _ _ cpu _ < <(saturate "$(url "$us")" "${pid[$us]}")
    printf '%s\t%s\t%s\t%s\t%s\t%s\n' "$us" "$r" "$rps" "$cpu" "$frps" "$fcpu" >>"$raw"
    echo "budget: $us, #$r: $rps req/s, $cpu µs of CPU a request (floor just before: $frps, $fcpu)" >&2
  done
done

col() { awk -F'\t' -v s="$1" -v c="$2" 'NR > 1 && (s == "*" || $1 == s) { print $c }' "$raw" | median | xargs printf "$3"; }
share() { awk -F'\t' -v s="$1" '$1 == s { printf "%.4f\n", $3 / $5 }' "$raw" | median; }
added() { awk -F'\t' -v s="$1" '$1 == s { printf "%.2f\n", $4 - $6 }' "$raw" | median; }
mkdir -p "$out"
cp "$raw" "$out/budget.tsv"
{
  echo "| server | throughput at saturation (req/s) | share of the floor's (median of pairs) | server CPU per request (µs) | added to the floor's (median of pairs, µs) |"
  echo "|---|---:|---:|---:|---:|"
  echo "| floor (every run) | $(col '*' 5 %.0f) | 1.00 | $(col '*' 6 %.1f) | |"
  for us in ${servers#0 }; do
    label="floor + $us µs of busy work"
    [[ $us == webhook ]] && label="the webhook"
    echo "| $label | $(col "$us" 3 %.0f) | $(share "$us" | xargs printf '%.2f') | $(col "$us" 4 %.1f) | $(added "$us" | xargs printf '%+.1f') |"
  done
  echo
  # The pairs' ratios show how much the host's load still moved between a pair's two runs.
  awk -F'\t' 'NR > 1 { if (!($1 in seen)) order[++n] = $1; v[$1] = v[$1] sprintf("%s%.2f", (seen[$1]++ ? ", " : ""), $3 / $5) }
    END { for (i = 1; i <= n; i++) printf "%s, pair by pair: %s  \n", (order[i] == "webhook" ? "webhook" : "+" order[i] " µs"), v[order[i]] }' "$raw"
  echo
  echo "Machine: $(nproc) × $(awk -F': ' '/^model name/ { print $2; exit }' /proc/cpuinfo), $(uname -sr); $(date -u +%Y-%m-%d). Load average at the end: $(cut -d' ' -f1-3 /proc/loadavg)."
  echo "Command: \`make bench-budget\` (WORK_US=\"$WORK_US\" REPEATS=$REPEATS SAT_DURATION=${SAT_DURATION}s; floors on CPU $SERVER_CPU with $WORKERS tokio worker(s), h2load on CPU $CLIENT_CPU; $CLIENTS connections × $STREAMS streams). Each server run paired with a floor run just before it; medians of $REPEATS rounds."
} >"$out/budget.md"
cat "$out/budget.md"
echo "bench-budget: wrote $out/budget.md, budget.tsv" >&2
