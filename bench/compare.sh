#!/usr/bin/env bash
# Compares builds of the webhook (or log levels) by their p50 at one fixed rate, each next to the
# floor: every variant and the floor run side by side, one after another in ROUNDS rounds, so that
# the host's slow and fast minutes fall on all of them alike. Prints, per variant, its median p50 and
# its ratios to the floor's p50 of the same round: the median and quartiles of ROUNDS pairs, which is
# what tells a 5 µs change from this machine's noise (bench/README.md, "Comparing builds").
#
#   bench/compare.sh NAME=BINARY[,RUST_LOG] ...
#   bench/compare.sh head=target/release/dualstack-webhook quiet=target/release/dualstack-webhook,warn \
#     other=/tmp/other-build/dualstack-webhook
#
# Knobs: ROUNDS (20), DURATION (3 s a run), RATE (1000), BUILD=0 to skip building this checkout's
# webhook, floor and client; LAT_CLIENTS and the placement knobs of bench/common.sh.
# Each binary runs from a fresh copy of it. Writes nothing under bench/results/; every run's p50
# goes to the file $RAW, if given.
set -euo pipefail

ROUNDS=${ROUNDS:-20}
DURATION=${DURATION:-3}
RATE=${RATE:-1000}

(($#)) || { sed -n '2,15p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//' >&2; exit 2; }
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"
need_tools taskset:util-linux
RAW=${RAW:-$work/compare.tsv}

names=() urls=()
# Records the server just started as NAME ($1) on PORT ($2), once it listens.
started() {
  names+=("$1") urls+=("https://127.0.0.1:$2/mutate")
  listening "$2"
}
for variant in "$@"; do
  name=${variant%%=*} spec=${variant#*=}
  binary=${spec%%,*} level=info
  [[ $spec == *,* ]] && level=${spec#*,}
  [[ $name != "$variant" && -x $binary && $name != floor ]] ||
    { echo "compare: want NAME=BINARY[,RUST_LOG] (NAME not 'floor'), got '$variant'" >&2; exit 2; }
  binary=$(fresh "$binary" "bin-$name")
  port=$(free_port)
  RUST_LOG=$level pin "$binary" serve --listen "127.0.0.1:$port" --admin-listen "127.0.0.1:$(free_port)" \
    --tls-cert "$work/certs/tls.crt" --tls-key "$work/certs/tls.key" \
    --policy "$policy" --service-cidrs "$cidrs" --shutdown-delay 0 2>>"$work/$name.log" &
  pids+=("$!")
  started "$name" "$port"
done
port=$(free_port)
pin "$floor" --listen "127.0.0.1:$port" --tls-cert "$work/certs/tls.crt" --tls-key "$work/certs/tls.key" &
pids+=("$!")
started floor "$port"

printf 'name\tround\tp50_us\n' >"$RAW"
for round in $(seq 1 "$ROUNDS"); do
  line=
  for i in "${!names[@]}"; do
    log=$work/${names[$i]}-$round.log
    paced "$RATE" "${urls[$i]}" "$log" >/dev/null
    p50=$(median <"$log")
    printf '%s\t%s\t%s\n' "${names[$i]}" "$round" "$p50" >>"$RAW"
    line+=" ${names[$i]}=$p50"
  done
  echo "round $round:$line" >&2
done

# Median and quartiles (the middle value, or the mean of the two middle ones, of each half).
quartiles() {
  sort -g | awk '{ v[NR] = $1 }
    function mid(lo, hi) { n = hi - lo + 1; return n % 2 ? v[lo + (n - 1) / 2] : (v[lo + n / 2 - 1] + v[lo + n / 2]) / 2 }
    END { h = int(NR / 2); printf "%.2f", mid(1, NR); if (h) printf " (%.2f–%.2f)", mid(1, h), mid(NR - h + 1, NR) }'
}
echo "p50 at $RATE req/s over HTTP/1.1, evenly spaced, $ROUNDS rounds of ${DURATION} s; ratio to the floor of the same round: median (quartiles)"
floor_p50=$(awk -F'\t' '$1 == "floor" { print $3 }' "$RAW" | median)
echo "floor: p50 median ${floor_p50} µs"
for name in "${names[@]}"; do
  [[ $name == floor ]] && continue
  p50=$(awk -F'\t' -v n="$name" '$1 == n { print $3 }' "$RAW" | median)
  ratio=$(awk -F'\t' -v n="$name" '$1 == "floor" { f[$2] = $3 } $1 == n { w[$2] = $3 }
    END { for (r in w) print w[r] / f[r] }' "$RAW" | quartiles)
  echo "$name: p50 median $p50 µs; ratio $ratio"
done
