#!/usr/bin/env bash
# The benchmark harness (`make bench`): the release webhook and the floor server (examples/floor.rs:
# rustls + hyper answering a constant AdmissionReview) in the same run, on the same machine, driven
# with a realistic Service CREATE review (bench/data/review-typical.json) over HTTP/1.1, as
# kube-apiserver calls a webhook behind a Service: to saturation by h2load (PROTOCOL=h2 for HTTP/2,
# bench/common.sh), at fixed rates by examples/pace.rs (evenly spaced, open loop).
#
# For each server it measures: throughput at saturation, p50/p99/p99.9 at fixed open-loop rates,
# the server's CPU time per request and how busy its core was at saturation (/proc/PID/stat),
# peak RSS (VmHWM) and, for the webhook, the time from exec to /readyz answering 200. Every
# measurement is repeated (REPEATS) with the two servers interleaved, and the median is reported.
# Writes bench/results/{raw.tsv,saturation.tsv,latency.tsv,summary.md,latency.png}. Stops only
# what it started.
#
# Knobs (environment): REPEATS=3 DURATION=5 (s per point) SAT_DURATION=10 RATES="500 1000 ..."
# MODERATE=1000 (the rate the p50 target is judged at) PROTOCOL=http/1.1 SERVER_CPU=1 CLIENT_CPU=0
# WORKERS=1 (tokio worker threads of both servers) CLIENTS=4 STREAMS=16 (saturation) LAT_CLIENTS=10
# (connections at fixed rates) BUILD=1.
set -euo pipefail

REPEATS=${REPEATS:-3}
DURATION=${DURATION:-5}
SAT_DURATION=${SAT_DURATION:-10}
RATES=${RATES:-"500 1000 2000 4000 6000 8000 10000 12000 14000"}
MODERATE=${MODERATE:-1000}

# shellcheck source=bench/common.sh
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"
need_tools h2load:nghttp2-client gnuplot:gnuplot-nox taskset:util-linux

# Answers 0 when GET /readyz on 127.0.0.1:$1 says 200 (bash builtins only: no fork per poll).
readyz() {
  local line
  { exec 3<>"/dev/tcp/127.0.0.1/$1"; } 2>/dev/null || return 1
  printf 'GET /readyz HTTP/1.0\r\n\r\n' >&3
  IFS= read -r line <&3 || true
  exec 3<&-
  [[ $line == *" 200 "* ]]
}

# Starts the webhook on $1 (admin $2), records its pid in $webhook_pid and the ready time (ms).
start_webhook() {
  local t0 t1
  t0=$EPOCHREALTIME
  pin "$webhook" serve --listen "127.0.0.1:$1" --admin-listen "127.0.0.1:$2" \
    --tls-cert "$work/certs/tls.crt" --tls-key "$work/certs/tls.key" \
    --policy "$policy" --service-cidrs "$cidrs" --shutdown-delay 0 2>>"$work/webhook.log" &
  webhook_pid=$!
  pids+=("$webhook_pid")
  # Poll without sleeping (a refused connect costs microseconds), for at most 10 s.
  local deadline=$(( ${t0/./} + 10000000 ))
  until readyz "$2" || (( ${EPOCHREALTIME/./} > deadline )); do :; done
  t1=$EPOCHREALTIME
  readyz "$2" || { cat "$work/webhook.log" >&2; echo "bench: webhook not ready" >&2; exit 1; }
  ready_ms=$(awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.1f", (b - a) * 1000 }')
}

stop() { kill -TERM "$1"; wait "$1" 2>/dev/null || true; }

# --- ready time (five cold starts, median) ---------------------------------------------------------
readies=()
for _ in 1 2 3 4 5; do
  start_webhook "$(free_port)" "$(free_port)"
  readies+=("$ready_ms")
  stop "$webhook_pid"
done
ready_median=$(printf '%s\n' "${readies[@]}" | median)

# --- the two servers, up for the whole run ---------------------------------------------------------
wport=$(free_port) aport=$(free_port) fport=$(free_port)
start_webhook "$wport" "$aport"
pin "$floor" --listen "127.0.0.1:$fport" --tls-cert "$work/certs/tls.crt" --tls-key "$work/certs/tls.key" &
floor_pid=$!
pids+=("$floor_pid")
listening "$fport"

url() { if [[ $1 == webhook ]]; then echo "https://127.0.0.1:$wport/mutate"; else echo "https://127.0.0.1:$fport/mutate"; fi; }

# Warm both up (connections, allocator, caches).
for s in webhook floor; do load -n 5000 -c "$sat_conns" -m "$sat_streams" "$(url $s)" >/dev/null; done

raw=$work/raw.tsv
printf 'server\tmode\trate\trepeat\treq_per_s\tp50_us\tp99_us\tp999_us\tok\n' >"$raw"

pid_of() { if [[ $1 == webhook ]]; then echo "$webhook_pid"; else echo "$floor_pid"; fi; }

# Saturation (`saturate`): the server's CPU time over the run says whether its core was the limit
# (busy near 100 %) and what a request costs it, in user and in system (kernel) time.
sat=$work/saturation.tsv
printf 'server\trepeat\tbusy_pct\tcpu_us\tuser_us\tsys_us\n' >"$sat"
for r in $(seq 1 "$REPEATS"); do
  for s in webhook floor; do
    read -r rps ok busy cpu user sys < <(saturate "$(url $s)" "$(pid_of $s)")
    printf '%s\tsaturation\t-\t%s\t%s\t\t\t\t%s\n' "$s" "$r" "$rps" "$ok" >>"$raw"
    printf '%s\t%s\t%s\t%s\t%s\t%s\n' "$s" "$r" "$busy" "$cpu" "$user" "$sys" >>"$sat"
    echo "saturation $s #$r: $rps req/s; server core ${busy}% busy, ${user} µs user + ${sys} µs system a request" >&2
  done
done

# Latency at fixed offered rates: open loop, evenly spaced (`paced`, bench/common.sh).
for rate in $RATES; do
  for r in $(seq 1 "$REPEATS"); do
    for s in webhook floor; do
      log=$work/$s-$rate-$r.log
      res=$(paced "$rate" "$(url $s)" "$log")
      read -r rps ok <<<"$res"
      read -r p50 p99 p999 < <(sort -n "$log" | awk '{ v[NR] = $1 } END {
        i = int(NR * 0.50); if (i < 1) i = 1; j = int(NR * 0.99); if (j < 1) j = 1; k = int(NR * 0.999); if (k < 1) k = 1
        print v[i], v[j], v[k] }')
      printf '%s\tlatency\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$s" "$rate" "$r" "$rps" "$p50" "$p99" "$p999" "$ok" >>"$raw"
      echo "rate $rate $s #$r: p50 ${p50}us p99 ${p99}us p99.9 ${p999}us ($rps req/s)" >&2
    done
  done
done

hwm() { awk '/^VmHWM/ { printf "%.1f", $2 / 1024 }' "/proc/$1/status"; }
rss_webhook=$(hwm "$webhook_pid") rss_floor=$(hwm "$floor_pid")

# --- medians, ratios, plot -------------------------------------------------------------------------
mkdir -p "$out"
cp "$raw" "$out/raw.tsv"
med() { awk -F'\t' -v s="$1" -v m="$2" -v rate="$3" -v col="$4" '$1 == s && $2 == m && $3 == rate { print $col }' "$raw" | median; }
lat=$out/latency.tsv
printf 'rate\twebhook_p50_us\twebhook_p99_us\twebhook_p999_us\tfloor_p50_us\tfloor_p99_us\tfloor_p999_us\n' >"$lat"
for rate in $RATES; do
  printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$rate" \
    "$(med webhook latency "$rate" 6)" "$(med webhook latency "$rate" 7)" "$(med webhook latency "$rate" 8)" \
    "$(med floor latency "$rate" 6)" "$(med floor latency "$rate" 7)" "$(med floor latency "$rate" 8)" >>"$lat"
done
sat_w=$(med webhook saturation - 5) sat_f=$(med floor saturation - 5)
cp "$sat" "$out/saturation.tsv"
smed() { awk -F'\t' -v s="$1" -v col="$2" '$1 == s { print $col }' "$sat" | median; }
cpu_w=$(smed webhook 4) cpu_f=$(smed floor 4) busy_w=$(smed webhook 3) busy_f=$(smed floor 3)
row() { awk -F'\t' -v r="$1" '$1 == r' "$lat"; }
IFS=$'\t' read -r _ w50 w99 w999 f50 f99 f999 < <(row "$MODERATE")
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.2f", a / b }'; }
cpu=$(awk -F': ' '/^model name/ { print $2; exit }' /proc/cpuinfo)
{
  echo "| | webhook | floor | webhook/floor |"
  echo "|---|---:|---:|---:|"
  echo "| throughput at saturation (req/s) | ${sat_w%.*} | ${sat_f%.*} | $(ratio "$sat_w" "$sat_f") |"
  echo "| p50 at $MODERATE req/s (µs) | $w50 | $f50 | $(ratio "$w50" "$f50") |"
  echo "| p99 at $MODERATE req/s (µs) | $w99 | $f99 | $(ratio "$w99" "$f99") |"
  echo "| p99.9 at $MODERATE req/s (µs) | $w999 | $f999 | $(ratio "$w999" "$f999") |"
  echo "| peak RSS under load (MiB) | $rss_webhook | $rss_floor | $(ratio "$rss_webhook" "$rss_floor") |"
  echo "| ready after exec (ms, median of 5) | $ready_median | | |"
  echo "| server CPU per request at saturation (µs) | $cpu_w | $cpu_f | $(ratio "$cpu_w" "$cpu_f") |"
  echo "| of which user / system (µs) | $(smed webhook 5) / $(smed webhook 6) | $(smed floor 5) / $(smed floor 6) | |"
  echo "| server core busy at saturation (%) | $busy_w | $busy_f | |"
  echo
  # Each run of the webhook is followed by one of the floor: their ratios, run by run, show how
  # much of the median ratio is the host's load moving between runs.
  paired=$(awk -F'\t' '$2 == "saturation" { rps[$1, $4] = $5 } END {
    for (r = 1; ("webhook", r) in rps; r++) printf "%s%.2f", (r > 1 ? ", " : ""), rps["webhook", r] / rps["floor", r] }' "$raw")
  echo "Saturation, webhook/floor run by run: $paired."
  echo
  echo "Machine: $(nproc) × $cpu, $(uname -sr); $(date -u +%Y-%m-%d). Load average at the end: $(cut -d' ' -f1-3 /proc/loadavg)."
  echo "Command: \`make bench\` (REPEATS=$REPEATS DURATION=${DURATION}s SAT_DURATION=${SAT_DURATION}s; servers on CPU $SERVER_CPU with $WORKERS tokio worker(s), clients on CPU $CLIENT_CPU; saturation: h2load over $PROTOCOL, $sat_conns connections × $sat_streams streams; fixed rates: examples/pace.rs over HTTP/1.1, open loop, evenly spaced over $LAT_CLIENTS warmed-up connections). Medians of $REPEATS interleaved runs."
  echo "Review: $(wc -c <"$review") bytes ($(basename "$review")), POST /mutate, answered with a patch; policy: manifests/policy.yaml; --service-cidrs $cidrs."
} >"$out/summary.md"
cat "$out/summary.md"

gnuplot <<EOF
set terminal pngcairo size 900,560 font "sans,10"
set output "$out/latency.png"
set title "dualstack-webhook vs floor (rustls + hyper, constant answer): latency vs offered load\n$(basename "$review"), open loop over HTTP/1.1 (examples/pace.rs), $(date -u +%Y-%m-%d), medians of $REPEATS runs"
set xlabel "offered load (requests/s, open loop)"
set ylabel "latency (µs)"
set logscale y
set key top left
set grid
plot "$lat" using 1:2 skip 1 with linespoints lw 2 lc rgb "#c0392b" title "webhook p50", \
     "$lat" using 1:3 skip 1 with linespoints lw 1 dt 2 lc rgb "#c0392b" title "webhook p99", \
     "$lat" using 1:5 skip 1 with linespoints lw 2 lc rgb "#2471a3" title "floor p50", \
     "$lat" using 1:6 skip 1 with linespoints lw 1 dt 2 lc rgb "#2471a3" title "floor p99"
EOF
echo "bench: wrote $out/summary.md, raw.tsv, latency.tsv, latency.png" >&2
