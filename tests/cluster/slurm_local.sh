# A real Slurm on localhost for tests (sourced, not run): munged, slurmctld and one slurmd, all
# from files in a temporary directory, started in the foreground in the background so that their
# pids are ours, and stopped by those pids only. docs/DESIGN.md section 13.2 ("A real Slurm on
# localhost") lists the settings that work without systemd and cgroups.
#
#   source tests/cluster/slurm_local.sh
#   slurm_start "$tmpdir"   # exports SLURM_CONF; returns non-zero (with the daemons' logs) on failure
#   ...                     # sbatch, srun, squeue, scontrol, scancel
#   slurm_stop              # also run from an EXIT trap

SLURM_LOCAL_PIDS=()

slurm_log_tail() {
  local f
  for f in "$SLURM_LOCAL_DIR"/log/*.log; do
    [ -f "$f" ] && { echo "--- $f"; tail -n 20 "$f"; }
  done
}

# slurm_wait SECONDS COMMAND...: retries COMMAND every half second until it succeeds.
slurm_wait() {
  local deadline=$((SECONDS + $1))
  shift
  until "$@" >/dev/null 2>&1; do
    [ "$SECONDS" -lt "$deadline" ] || return 1
    sleep 0.5
  done
}

slurm_start() {
  SLURM_LOCAL_DIR="$1"
  local d="$SLURM_LOCAL_DIR" node cpus
  node="$(hostname -s)"
  # The machine's CPUs (at least 2: the tests run two ranks; SlurmdParameters=config_overrides
  # lets slurmd claim more than a 1-CPU machine has).
  cpus=$(nproc)
  ((cpus >= 2)) || cpus=2
  mkdir -p "$d/munge" "$d/log" "$d/state" "$d/spool" "$d/tmp"
  chmod 0711 "$d" "$d/munge"  # munge's socket directory needs o+x for clients
  dd if=/dev/urandom of="$d/munge/munge.key" bs=1024 count=1 status=none
  chmod 0600 "$d/munge/munge.key"
  munged -F --force --key-file="$d/munge/munge.key" --socket="$d/munge/munge.socket" \
    --pid-file="$d/munge/munged.pid" --log-file="$d/log/munged.log" \
    --seed-file="$d/munge/munged.seed" >>"$d/log/munged.log" 2>&1 &
  SLURM_LOCAL_PIDS+=($!)

  cat >"$d/slurm.conf" <<CONF
# Written by tests/cluster/slurm_local.sh: one node, no cgroups, no slurmdbd.
ClusterName=tandemtest
SlurmctldHost=$node(127.0.0.1)
SlurmctldPort=$((46817 + RANDOM % 1000))
SlurmdPort=$((47817 + RANDOM % 1000))
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
AuthInfo=socket=$d/munge/munge.socket
CredType=cred/munge
StateSaveLocation=$d/state
SlurmdSpoolDir=$d/spool/slurmd-%n
SlurmctldPidFile=$d/slurmctld.pid
SlurmdPidFile=$d/slurmd-%n.pid
SlurmctldLogFile=$d/log/slurmctld.log
SlurmdLogFile=$d/log/slurmd-%n.log
TmpFS=$d/tmp
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_CPU
SchedulerType=sched/backfill
AccountingStorageType=accounting_storage/none
JobCompType=jobcomp/filetxt
JobCompLoc=$d/log/jobcomp.txt
MpiDefault=none
ReturnToService=2
SlurmdParameters=config_overrides
MinJobAge=600
InactiveLimit=0
KillWait=5
NodeName=$node NodeAddr=127.0.0.1 CPUs=$cpus State=UNKNOWN
PartitionName=debug Nodes=$node Default=YES MaxTime=INFINITE State=UP
CONF
  export SLURM_CONF="$d/slurm.conf"
  slurm_wait 20 test -S "$d/munge/munge.socket" || { echo "munged did not start"; slurm_log_tail; return 1; }
  slurmctld -D -i -f "$SLURM_CONF" >>"$d/log/slurmctld.out" 2>&1 &
  SLURM_LOCAL_PIDS+=($!)
  slurm_wait 30 scontrol ping || { echo "slurmctld did not answer"; slurm_log_tail; return 1; }
  slurmd -D -f "$SLURM_CONF" >>"$d/log/slurmd.out" 2>&1 &
  SLURM_LOCAL_PIDS+=($!)
  slurm_wait 60 slurm_node_idle || { echo "slurmd did not become idle"; sinfo 2>&1; slurm_log_tail; return 1; }
}

slurm_node_idle() {
  sinfo -h -N -o '%t' | grep -q '^idle'
}

slurm_stop() {
  local pid i
  # slurmd first (it kills the steps it started), then slurmctld, then munged: reverse order.
  for ((i = ${#SLURM_LOCAL_PIDS[@]} - 1; i >= 0; i--)); do
    pid="${SLURM_LOCAL_PIDS[$i]}"
    kill -TERM "$pid" 2>/dev/null || continue
    for _ in $(seq 1 40); do kill -0 "$pid" 2>/dev/null || break; sleep 0.25; done
    kill -KILL "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
  done
  SLURM_LOCAL_PIDS=()
}
