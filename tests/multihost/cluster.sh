#!/usr/bin/env bash
# Emulated hosts on one machine, for tandem's multi-host tests and benchmarks (run as root).
#
# Each host is a network namespace with its own hostname (a UTS namespace), its own /dev/shm and
# /tmp (tmpfs in a mount namespace of its own, as separate machines have) and /etc/hosts naming
# every host of the cluster, and one interface `eth0` on a bridge that lives in a namespace of its
# own ("switch"): nothing is added to this machine's own network namespace. Addresses come from
# 198.18.0.0/15 (RFC 2544, reserved for benchmarking) and exist only inside these namespaces; no
# host gets a default route or NAT, so no traffic can leave the machine.
#
# The one decision: a host's state lives in mounts under a state directory, not in processes: its
# network and UTS namespaces are bind-mounted there (as `ip netns` does), its /dev/shm and /tmp are
# tmpfs mounts there, and `run` enters the host by joining those namespaces and binding those
# file systems over /dev/shm and /tmp in a mount namespace of its own. So a command can be run on
# any host at any time -- also from inside another host, as mpirun's remote shell does -- and
# `down` removes exactly what `up` made, even after the process that ran `up` was killed.
#
#   cluster.sh up N           hosts h0 .. h<N-1> at <net>.1 .. <net>.N (down first if one is up)
#   cluster.sh down           kill every process on the hosts, remove everything `up` made
#   cluster.sh run HOST CMD   run CMD on HOST (in its namespaces, same working directory)
#   cluster.sh shape RATE     limit every host's link in both directions (tc tbf: 1gbit,
#                             100mbit, ...); `shape off` removes the limit
#   cluster.sh link HOST down|up   cut or restore HOST's cable at the switch (a partition)
#   cluster.sh kill HOST      SIGKILL every process running on HOST
#   cluster.sh addr HOST      its address;  cluster.sh hosts: every host name
#   cluster.sh pids HOST      the processes running on HOST
#
# Environment: TANDEM_CLUSTER names the cluster (default "tandem"; namespaces are
# "<name>-h<i>" and "<name>-switch"), TANDEM_CLUSTER_NET its /24 (default 198.18.0: three
# octets inside 198.18.0.0/15), so that several clusters can exist side by side.
# TANDEM_CLUSTER_SHARE: colon-separated directories under /tmp that every host must still see
# (e.g. a build directory), read at `up`; everything else under /tmp is private to each host.
# TANDEM_CLUSTER_NAMES=0: the hosts' /etc/hosts names none of them (names that do not resolve).
set -euo pipefail

NAME="${TANDEM_CLUSTER:-tandem}"
NET="${TANDEM_CLUSTER_NET:-198.18.0}"
STATE="/run/tandem-cluster/$NAME"
SWITCH="$NAME-switch"

die() {
  echo "cluster.sh: $*" >&2
  exit 2
}

[[ "$NAME" =~ ^[a-z0-9][a-z0-9-]{0,15}$ ]] || die "TANDEM_CLUSTER='$NAME': use 1-16 of a-z, 0-9, -"
if ! [[ "$NET" =~ ^198\.(18|19)\.([0-9]{1,3})$ ]] || ((BASH_REMATCH[2] > 255)); then
  die "TANDEM_CLUSTER_NET='$NET': expected three octets inside 198.18.0.0/15 (e.g. 198.18.7)"
fi

host_ns() { echo "$NAME-$1"; }
host_count() { [ -f "$STATE/hosts.list" ] && wc -l <"$STATE/hosts.list" || echo 0; }
require_host() {
  grep -qx "$1" "$STATE/hosts.list" 2>/dev/null || die "no host '$1' in cluster '$NAME' (hosts: $(tr '\n' ' ' <"$STATE/hosts.list" 2>/dev/null))"
}

# Every process whose network namespace is HOST's.
host_pids() { ip netns pids "$(host_ns "$1")" 2>/dev/null || true; }

kill_host() {
  local pids
  for _ in 1 2 3 4 5; do
    pids="$(host_pids "$1")"
    [ -n "$pids" ] || return 0
    kill -KILL $pids 2>/dev/null || true
    sleep 0.1
  done
}

cmd_down() {
  [ -d "$STATE" ] || return 0
  local h
  if [ -f "$STATE/hosts.list" ]; then
    while read -r h; do kill_host "$h"; done <"$STATE/hosts.list"
    while read -r h; do
      umount -l "$STATE/$h/shm" 2>/dev/null || true
      umount -l "$STATE/$h/tmp" 2>/dev/null || true
      umount "$STATE/$h/uts" 2>/dev/null || true
      ip netns del "$(host_ns "$h")" 2>/dev/null || true
    done <"$STATE/hosts.list"
  fi
  umount -l "$STATE/machine-tmp" 2>/dev/null || true
  ip netns del "$SWITCH" 2>/dev/null || true
  umount -l "$STATE" 2>/dev/null || true
  rm -rf "$STATE"
  rmdir /run/tandem-cluster 2>/dev/null || true
}

cmd_up() {
  local n="${1:-}"
  [[ "$n" =~ ^[0-9]+$ ]] && ((n >= 1 && n <= 64)) || die "up: expected a host count 1..64, got '$n'"
  cmd_down
  mkdir -p "$STATE"
  # Namespace files can only be bind-mounted onto a mount that does not propagate.
  mount --bind "$STATE" "$STATE"
  mount --make-private "$STATE"
  trap 'echo "cluster.sh: up failed, removing what it made" >&2; cmd_down' ERR

  ip netns add "$SWITCH"
  ip -n "$SWITCH" link add br0 type bridge forward_delay 0  # forward at once, no STP
  ip -n "$SWITCH" link set br0 up
  ip -n "$SWITCH" link set lo up

  {
    echo "127.0.0.1 localhost"
    echo "::1 localhost ip6-localhost ip6-loopback"
    if [ "${TANDEM_CLUSTER_NAMES:-1}" != 0 ]; then
      for ((i = 0; i < n; i++)); do echo "$NET.$((i + 1)) h$i"; done
    fi
  } >"$STATE/hosts"
  : >"$STATE/hosts.list"
  # The machine's /tmp as it is, for TANDEM_CLUSTER_SHARE (a host's own /tmp hides it).
  mkdir -p "$STATE/machine-tmp"
  mount --rbind /tmp "$STATE/machine-tmp"
  echo "${TANDEM_CLUSTER_SHARE:-}" >"$STATE/share"

  for ((i = 0; i < n; i++)); do
    local h="h$i" ns
    ns="$(host_ns "$h")"
    ip netns add "$ns"
    echo "$h" >>"$STATE/hosts.list"
    ip -n "$SWITCH" link add "p$i" type veth peer name eth0 netns "$ns"
    ip -n "$SWITCH" link set "p$i" master br0 up
    ip -n "$ns" link set lo up
    ip -n "$ns" addr add "$NET.$((i + 1))/24" dev eth0
    ip -n "$ns" link set eth0 up
    mkdir -p "$STATE/$h/shm" "$STATE/$h/tmp"
    mount -t tmpfs -o size=1g,mode=1777 "tandem-$h-shm" "$STATE/$h/shm"
    mount -t tmpfs -o size=2g,mode=1777 "tandem-$h-tmp" "$STATE/$h/tmp"
    touch "$STATE/$h/uts"
    unshare --uts="$STATE/$h/uts" hostname "$h"
  done
  trap - ERR
  # Wait until every host reaches every other one.
  local j deadline=$((SECONDS + 10))
  for ((i = 0; i < n; i++)); do
    for ((j = 0; j < n; j++)); do
      # A refused connection (nothing listens on port 9) proves the address answers.
      until [[ "$(ip netns exec "$(host_ns "h$i")" timeout 1 bash -c \
        "exec 3<>/dev/tcp/$NET.$((j + 1))/9" 2>&1)" == *refused* ]]; do
        ((SECONDS < deadline)) || break
        sleep 0.2
      done
    done
  done
}

cmd_run() {
  local h="${1:-}"
  [ -n "$h" ] || die "run: expected HOST CMD..."
  shift
  require_host "$h"
  [ $# -gt 0 ] || die "run: no command for $h"
  exec nsenter --net="/run/netns/$(host_ns "$h")" --uts="$STATE/$h/uts" -- \
    unshare --mount --propagation private -- bash -euc '
      state="$1" h="$2" wd="$3"
      shift 3
      mount --bind "$state/$h/shm" /dev/shm
      mount --bind "$state/hosts" /etc/hosts
      mount --bind "$state/$h/tmp" /tmp
      IFS=: read -ra keep <"$state/share"
      for d in "${keep[@]}"; do
        case "$d" in /tmp/?*) ;; *) continue ;; esac
        [ -d "$state/machine-tmp/${d#/tmp/}" ] || continue
        mkdir -p "$d"
        mount --rbind "$state/machine-tmp/${d#/tmp/}" "$d"
      done
      cd "$wd" 2>/dev/null || cd /
      exec "$@"' _ "$STATE" "$h" "$PWD" "$@"
}

cmd_shape() {
  local rate="${1:-}" i ns
  [ -n "$rate" ] || die "shape: expected a rate (1gbit, 100mbit, ...) or off"
  [ "$rate" = off ] || [[ "$rate" =~ ^[0-9]+(\.[0-9]+)?([kmg]bit|[kmg]bps|bit|bps)$ ]] ||
    die "shape: '$rate' is not a tc rate such as 1gbit or 100mbit"
  for ((i = 0; i < $(host_count); i++)); do
    ns="$(host_ns "h$i")"
    if [ "$rate" = off ]; then
      tc -n "$ns" qdisc del dev eth0 root 2>/dev/null || true
      tc -n "$SWITCH" qdisc del dev "p$i" root 2>/dev/null || true
      continue
    fi
    # burst: at least a 64 KiB TSO segment and 4 ms at the rate; queue: 20 ms at the rate.
    local bits bytes_per_s burst limit
    bits="$(rate_bits "$rate")"
    bytes_per_s=$((bits / 8))
    burst=$((bytes_per_s / 250))
    ((burst >= 131072)) || burst=131072
    limit=$((bytes_per_s / 50))
    ((limit >= 2 * burst)) || limit=$((2 * burst))
    tc -n "$ns" qdisc replace dev eth0 root tbf rate "$rate" burst "$burst" limit "$limit"
    tc -n "$SWITCH" qdisc replace dev "p$i" root tbf rate "$rate" burst "$burst" limit "$limit"
  done
}

# "100mbit" -> 100000000 (tc's units: k = 1000, bps = bytes per second).
rate_bits() {
  local r="$1" num unit
  num="${r%%[a-z]*}"
  unit="${r#"$num"}"
  local mult
  case "$unit" in
    bit) mult=1 ;; kbit) mult=1000 ;; mbit) mult=1000000 ;; gbit) mult=1000000000 ;;
    bps) mult=8 ;; kbps) mult=8000 ;; mbps) mult=8000000 ;; gbps) mult=8000000000 ;;
  esac
  awk -v n="$num" -v m="$mult" 'BEGIN { printf "%d", n * m }'
}

cmd_link() {
  local h="${1:-}" state="${2:-}"
  require_host "$h"
  [ "$state" = down ] || [ "$state" = up ] || die "link: expected HOST down|up"
  ip -n "$SWITCH" link set "p${h#h}" "$state"
}

case "${1:-}" in
  up) shift; cmd_up "$@" ;;
  down) cmd_down ;;
  run) shift; cmd_run "$@" ;;
  shape) shift; cmd_shape "$@" ;;
  link) shift; cmd_link "$@" ;;
  kill) require_host "${2:-}"; kill_host "$2" ;;
  pids) require_host "${2:-}"; host_pids "$2" ;;
  addr) require_host "${2:-}"; echo "$NET.$((${2#h} + 1))" ;;
  hosts) cat "$STATE/hosts.list" 2>/dev/null ;;
  *) die "usage: cluster.sh up N | down | run HOST CMD... | shape RATE|off | link HOST down|up | kill HOST | pids HOST | addr HOST | hosts" ;;
esac
