# Shared by the multihost tests (sourced): an emulated cluster for the test's lifetime, commands
# on its hosts in the background, and checks on the checkpoints they write.
#
#   source "$src/tests/multihost/lib.sh"
#   mh_setup NAME NET_OCTET HOSTS   # a cluster "mh-NAME" on 198.18.NET_OCTET.0/24; torn down at exit
#   mh_bg LOG HOST CMD...           # CMD on HOST in the background, output to LOG; pid in MH_PID
#   mh_wait PID SECONDS             # its exit status, or 124 after killing it at the deadline
#   mh_addr HOST                    # its address
#
# Needs root, iproute2 and util-linux (unshare, nsenter, mountpoint); skips (77) without them.
# Every test runs with TLS across hosts: mh_setup exports TANDEM_TLS_CERT and TANDEM_TLS_KEY.
# The work directory ($MH_WORK) lies under the build directory, which every host shares (real
# clusters share a file system for checkpoints); each host's /tmp and /dev/shm are its own.

mh_skip() {
  echo "SKIPPED: $*"
  exit 77
}

mh_fail() {
  echo "FAIL: $*"
  exit 1
}

mh_setup() {
  local name=$1 octet=$2 hosts=$3
  [ "$(id -u)" = 0 ] || mh_skip "the multihost tests create network namespaces: run as root"
  for tool in ip unshare nsenter mountpoint tc openssl; do
    command -v "$tool" >/dev/null || mh_skip "$tool not found (iproute2, util-linux, openssl)"
  done
  ip netns add "mh-probe-$$" 2>/dev/null || mh_skip "cannot create network namespaces here"
  ip netns del "mh-probe-$$"
  MH_CLUSTER_SH="$src/tests/multihost/cluster.sh"
  export TANDEM_CLUSTER="mh-$name" TANDEM_CLUSTER_NET="198.18.$octet"
  MH_WORK="$build/multihost/$name"
  rm -rf "$MH_WORK"
  mkdir -p "$MH_WORK"
  export TANDEM_CLUSTER_SHARE="$src:$build:$MH_WORK"
  # The job's TLS certificate and key, on the file system every host shares: the store and the
  # servers speak TLS across hosts. Made with the openssl tool, as the README shows for
  # `tandem launch` across hosts.
  mkdir -p "$MH_WORK/tls"
  mh_tls_pair "$MH_WORK/tls/job_tls" || mh_fail "openssl could not make the job's TLS certificate"
  export TANDEM_TLS_CERT="$MH_WORK/tls/job_tls.crt" TANDEM_TLS_KEY="$MH_WORK/tls/job_tls.key"
  MH_PIDS=()
  trap mh_teardown EXIT
  "$MH_CLUSTER_SH" up "$hosts" || mh_fail "could not create $hosts emulated hosts"
  export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
  # mpirun over the emulated hosts: our remote shell, and Open MPI's TCP on their network only.
  MH_MPIRUN=(mpirun --mca plm_rsh_agent "$src/tests/multihost/rsh_agent.sh"
             --mca btl_tcp_if_include "$TANDEM_CLUSTER_NET.0/24"
             --mca oob_tcp_if_include "$TANDEM_CLUSTER_NET.0/24" --bind-to none)
}

mh_tls_pair() {  # PREFIX: PREFIX.crt and PREFIX.key (mode 0600), a self-signed job identity
  (umask 077 && openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 2 \
    -subj /CN=tandem-job -addext subjectAltName=DNS:tandem-job -keyout "$1.key" -out "$1.crt" \
    2>/dev/null)
}

mh_teardown() {
  local pid
  for pid in "${MH_PIDS[@]}"; do kill -KILL "$pid" 2>/dev/null || true; done
  "$MH_CLUSTER_SH" down || true
  [ -n "${MH_KEEP:-}" ] || rm -rf "$MH_WORK"
}

mh_addr() { "$MH_CLUSTER_SH" addr "$1"; }
mh_on() {  # HOST CMD...: in the foreground
  local host=$1
  shift
  (cd "$MH_WORK" && "$MH_CLUSTER_SH" run "$host" "$@")
}

mh_bg() {  # LOG HOST CMD...
  local log=$1 host=$2
  shift 2
  (cd "$MH_WORK" && exec "$MH_CLUSTER_SH" run "$host" "$@") >"$log" 2>&1 &
  MH_PID=$!
  MH_PIDS+=("$MH_PID")
}

mh_wait() {  # PID SECONDS -> exit status (124: killed at the deadline)
  local pid=$1 deadline=$((SECONDS + $2))
  while kill -0 "$pid" 2>/dev/null; do
    if ((SECONDS >= deadline)); then
      kill -KILL "$pid" 2>/dev/null
      wait "$pid" 2>/dev/null
      return 124
    fi
    sleep 0.2
  done
  wait "$pid"
}

# The largest |a - b| over the model weights of two runs' newest checkpoints.
mh_distance() {  # CKPT_DIR_A CKPT_DIR_B
  /usr/bin/python3 - "$1" "$2" "$src/tests/reference" <<'PY'
import glob, sys
sys.path.insert(0, sys.argv[3])
import safetensors_io
def newest(d):
    paths = sorted(glob.glob(f"{d}/step-*/model.safetensors"))
    assert paths, f"no checkpoint in {d}"
    return safetensors_io.load(paths[-1])
a, b = newest(sys.argv[1]), newest(sys.argv[2])
assert a.keys() == b.keys(), "different tensors"
print("%.3e" % max(float((a[k].double() - b[k].double()).abs().max()) for k in a
                   if a[k].is_floating_point()))
PY
}
