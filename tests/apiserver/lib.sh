# shellcheck shell=bash
# Functions shared by start.sh, stop.sh and restart-apiserver.sh. Sourced, never run.
source "$(dirname "${BASH_SOURCE[0]}")/env.sh"

log() { echo "apiserver-harness: $*" >&2; }
die() { log "error: $*"; exit 1; }

# free_port: prints a TCP port on 127.0.0.1 that nothing listens on right now.
# (Racy by nature, like any "pick a free port" helper; good enough on loopback.)
free_port() {
  local p i lo=20000 hi=60000 eph
  # A port in the kernel's ephemeral range can be taken at any moment as the local end of an
  # outgoing connection (clients, apiserver -> etcd, apiserver -> webhooks), so "free now" does
  # not last until the server binds it (seen in the e2e runs: "bind: address already in use").
  # Pick below that range when there is room.
  if read -r eph _ </proc/sys/net/ipv4/ip_local_port_range 2>/dev/null && ((eph > 12000)); then
    lo=10000 hi=$eph
  fi
  for ((i = 0; i < 200; i++)); do
    p=$((lo + RANDOM % (hi - lo)))
    if ! (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null; then
      echo "$p"
      return 0
    fi
  done
  die "no free port found"
}

# first_ip CIDR: the first usable address of a service range (what the apiserver
# gives the "kubernetes" Service), e.g. 10.96.0.0/16 -> 10.96.0.1,
# fd00:10:96::/112 -> fd00:10:96:0:0:0:0:1.
first_ip() {
  local cidr="$1" addr="${1%/*}" prefix="${1#*/}"
  if [[ "$addr" == *:* ]]; then
    local head="${addr%%::*}" tail=""
    local -a h t full
    [[ "$addr" == *::* ]] && tail="${addr#*::}" || head="$addr"
    IFS=: read -r -a h <<<"$head"
    IFS=: read -r -a t <<<"$tail"
    local n=$((8 - ${#h[@]} - ${#t[@]})) i
    [[ "$addr" == *::* ]] || n=0
    full=("${h[@]}")
    for ((i = 0; i < n; i++)); do full+=(0); done
    full+=("${t[@]}")
    ((${#full[@]} == 8)) || die "cannot parse IPv6 CIDR $cidr"
    local out=() bits mask v
    for ((i = 0; i < 8; i++)); do
      bits=$((prefix - 16 * i)); ((bits < 0)) && bits=0; ((bits > 16)) && bits=16
      mask=$(((0xffff << (16 - bits)) & 0xffff))
      v=$((16#${full[i]:-0} & mask))
      ((i == 7)) && v=$((v + 1))
      out+=("$(printf '%x' "$v")")
    done
    (IFS=:; echo "${out[*]}")
  else
    local a b c d
    IFS=. read -r a b c d <<<"$addr"
    local n=$(((a << 24) | (b << 16) | (c << 8) | d))
    local mask=$(((0xffffffff << (32 - prefix)) & 0xffffffff))
    n=$(((n & mask) + 1))
    echo "$(((n >> 24) & 255)).$(((n >> 16) & 255)).$(((n >> 8) & 255)).$((n & 255))"
  fi
}

# make_ca DIR: throwaway CA, admin client cert (O=system:masters) and the
# service-account signing key pair.
make_ca() {
  local d="$1"
  mkdir -p "$d"
  openssl req -x509 -newkey rsa:2048 -nodes -days 3650 -subj "/CN=dualstack-webhook-e2e-ca" \
    -keyout "$d/ca.key" -out "$d/ca.crt" 2>/dev/null
  openssl req -new -newkey rsa:2048 -nodes -subj "/O=system:masters/CN=kubernetes-admin" \
    -keyout "$d/admin.key" -out "$d/admin.csr" 2>/dev/null
  printf '%s\n' "basicConstraints=CA:FALSE" "keyUsage=critical,digitalSignature,keyEncipherment" \
    "extendedKeyUsage=clientAuth" >"$d/admin.ext"
  openssl x509 -req -in "$d/admin.csr" -CA "$d/ca.crt" -CAkey "$d/ca.key" -CAcreateserial \
    -days 3650 -extfile "$d/admin.ext" -out "$d/admin.crt" 2>/dev/null
  openssl genrsa -out "$d/sa.key" 2048 2>/dev/null
  openssl rsa -in "$d/sa.key" -pubout -out "$d/sa.pub" 2>/dev/null
  rm -f "$d/admin.csr" "$d/admin.ext"
}

# make_serving_cert DIR CIDRS: (re)issues the apiserver serving cert, with SANs for
# loopback, the first IP of every service range and the in-cluster DNS names.
make_serving_cert() {
  local d="$1" cidrs="$2" sans="DNS:localhost,IP:127.0.0.1,IP:::1" c
  for n in kubernetes kubernetes.default kubernetes.default.svc kubernetes.default.svc.cluster.local; do
    sans+=",DNS:$n"
  done
  IFS=, read -r -a c <<<"$cidrs"
  for cidr in "${c[@]}"; do sans+=",IP:$(first_ip "$cidr")"; done
  openssl req -new -newkey rsa:2048 -nodes -subj "/CN=kube-apiserver" \
    -keyout "$d/apiserver.key" -out "$d/apiserver.csr" 2>/dev/null
  printf '%s\n' "basicConstraints=CA:FALSE" "keyUsage=critical,digitalSignature,keyEncipherment" \
    "extendedKeyUsage=serverAuth" "subjectAltName=$sans" >"$d/apiserver.ext"
  openssl x509 -req -in "$d/apiserver.csr" -CA "$d/ca.crt" -CAkey "$d/ca.key" -CAcreateserial \
    -days 3650 -extfile "$d/apiserver.ext" -out "$d/apiserver.crt" 2>/dev/null
  rm -f "$d/apiserver.csr" "$d/apiserver.ext"
}

# pid_is_ours WORKDIR PIDFILE: true if the pid recorded there is alive and its
# command line mentions WORKDIR (guards against a recycled pid).
# A child started a moment ago may not have exec'd yet (its cmdline is still the shell's), so a
# live pid that does not match is looked at again for up to a second before it counts as not ours.
pid_is_ours() {
  local wd="$1" pf="$2" pid i cmdline
  [[ -f "$pf" ]] || return 1
  pid="$(cat "$pf")"
  [[ "$pid" =~ ^[0-9]+$ ]] || return 1
  for ((i = 0; i < 10; i++)); do
    [[ -r "/proc/$pid/cmdline" ]] || return 1
    cmdline="$(tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null)" || return 1
    [[ "$cmdline" == *"$wd"* ]] && return 0
    sleep 0.1
  done
  return 1
}

# stop_pidfile WORKDIR NAME: TERM the process recorded in WORKDIR/NAME.pid, wait up
# to STOP_TIMEOUT seconds, then KILL. Only ever touches that one pid.
stop_pidfile() {
  local wd="$1" name="$2" pf="$1/$2.pid" pid i
  if ! pid_is_ours "$wd" "$pf"; then
    rm -f "$pf"
    return 0
  fi
  pid="$(cat "$pf")"
  log "stopping $name (pid $pid)"
  kill -TERM "$pid" 2>/dev/null || true
  for ((i = 0; i < ${STOP_TIMEOUT:-20} * 10; i++)); do
    kill -0 "$pid" 2>/dev/null || break
    sleep 0.1
  done
  if kill -0 "$pid" 2>/dev/null; then
    log "$name (pid $pid) still running after ${STOP_TIMEOUT:-20}s, sending KILL"
    kill -KILL "$pid" 2>/dev/null || true
    for ((i = 0; i < 50; i++)); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
  fi
  rm -f "$pf"
}

# wait_until WORKDIR NAME TIMEOUT CMD...: polls CMD until it succeeds; fails early,
# showing the log, if the process in WORKDIR/NAME.pid dies.
# Liveness here is `kill -0`, not pid_is_ours: the process was started a moment ago by this
# shell, and until the child has exec'd, /proc/PID/cmdline is still the shell's and does not
# name WORKDIR (a clean CI run failed on that race: "etcd exited before it was ready" while
# etcd was starting).
wait_until() {
  local wd="$1" name="$2" timeout="$3" deadline pid
  shift 3
  pid="$(cat "$wd/$name.pid")"
  deadline=$((SECONDS + timeout))
  until "$@" >/dev/null 2>&1; do
    if ! kill -0 "$pid" 2>/dev/null; then
      tail -n 30 "$wd/logs/$name.log" >&2 || true
      die "$name exited before it was ready (log: $wd/logs/$name.log)"
    fi
    if ((SECONDS >= deadline)); then
      tail -n 30 "$wd/logs/$name.log" >&2 || true
      die "$name not ready after ${timeout}s (log: $wd/logs/$name.log)"
    fi
    sleep 0.5
  done
}

# start_apiserver WORKDIR: starts kube-apiserver from the settings in WORKDIR/env
# and waits for /readyz.
start_apiserver() {
  local wd="$1"
  # shellcheck disable=SC1091
  source "$wd/env"
  local pki="$wd/pki"
  local -a args=(
    --etcd-servers="$ETCD_URL"
    --service-cluster-ip-range="$SERVICE_CIDRS"
    --secure-port="$APISERVER_PORT"
    --bind-address=127.0.0.1
    --advertise-address=127.0.0.1
    # A loopback advertise address is invalid in the "kubernetes" Endpoints, and
    # the apiserver refuses to start with the endpoint reconciler on (upstream's
    # test/integration/framework does the same).
    --endpoint-reconciler-type=none
    --cert-dir="$pki"
    --tls-cert-file="$pki/apiserver.crt"
    --tls-private-key-file="$pki/apiserver.key"
    --client-ca-file="$pki/ca.crt"
    --service-account-issuer=https://kubernetes.default.svc.cluster.local
    --service-account-key-file="$pki/sa.pub"
    --service-account-signing-key-file="$pki/sa.key"
    --authorization-mode=RBAC
    # The webhook admission plugins are on by default; name them so that nobody
    # can lose them by editing the defaults.
    --enable-admission-plugins="${ADMISSION_PLUGINS:-NamespaceLifecycle,LimitRanger,DefaultStorageClass,ResourceQuota,MutatingAdmissionWebhook,ValidatingAdmissionWebhook,ValidatingAdmissionPolicy}"
    # No kube-controller-manager runs here, so no "default" ServiceAccount is ever
    # created: the ServiceAccount plugin would reject every Pod.
    --disable-admission-plugins="${DISABLE_ADMISSION_PLUGINS:-ServiceAccount}"
    --allow-privileged=true
    --profiling=false
  )
  # shellcheck disable=SC2206
  [[ -n "${APISERVER_EXTRA_ARGS:-}" ]] && args+=($APISERVER_EXTRA_ARGS)
  log "starting kube-apiserver on https://127.0.0.1:$APISERVER_PORT (service CIDRs $SERVICE_CIDRS)"
  printf '%q ' "$BIN/kube-apiserver" "${args[@]}" >"$wd/kube-apiserver.cmdline"
  setsid "$BIN/kube-apiserver" "${args[@]}" </dev/null >>"$wd/logs/kube-apiserver.log" 2>&1 &
  echo $! >"$wd/kube-apiserver.pid"
  wait_until "$wd" kube-apiserver "${READY_TIMEOUT:-60}" \
    curl -fsS --max-time 5 --cacert "$pki/ca.crt" --cert "$pki/admin.crt" --key "$pki/admin.key" \
    "https://127.0.0.1:$APISERVER_PORT/readyz"
  log "kube-apiserver ready (pid $(cat "$wd/kube-apiserver.pid"))"
}
