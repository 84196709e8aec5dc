#!/usr/bin/env bash
# `tandem submit slurm --nodes N` on a real multi-node Slurm whose nodes are emulated hosts: munged
# on this machine (a Unix socket every host reaches), slurmctld on h0, one slurmd per host (its own
# hostname, address, /tmp and /dev/shm, as real nodes have: PMIx needs the private /tmp). For 2 and
# 4 nodes x 2 tasks, with --launcher tandem (one `tandem launch` per node, hierarchical all-reduce)
# and --launcher mpi (srun --mpi=pmix, MPI), each job must complete with the weights of one local
# process (fp64, within 1e-9) and a checkpoint saved by the whole world.
#
#   slurm_nodes.sh TANDEM_BINARY SOURCE_DIR BUILD_DIR
set -uo pipefail
tandem=$1 src=$2 build=$3
source "$src/tests/multihost/lib.sh"
data=/usr/share/datasets/fashion-mnist
[[ -e $data/train-images-idx3-ubyte.gz ]] || mh_skip "$data not found"
/usr/bin/python3 -c 'import torch' 2>/dev/null || mh_skip "python3-torch not installed"
for tool in munged slurmctld slurmd sbatch srun scontrol; do
  command -v "$tool" >/dev/null || mh_fail "$tool missing: run scripts/install-deps.sh"
done
hosts=4
mh_setup slurm 3 $hosts
d=$MH_WORK/slurm
mkdir -p "$d/munge" "$d/log" "$d/state" "$d/spool"
chmod 0711 "$d" "$d/munge"
daemons=()
stop_daemons() {
  local pid i
  for ((i = ${#daemons[@]} - 1; i >= 0; i--)); do
    pid=${daemons[$i]}
    kill -TERM "$pid" 2>/dev/null || continue
    for _ in $(seq 20); do kill -0 "$pid" 2>/dev/null || break; sleep 0.25; done
    kill -KILL "$pid" 2>/dev/null || true
  done
}
trap 'stop_daemons; mh_teardown' EXIT
logs() { for f in "$d"/log/*.log; do echo "--- $f"; tail -n 15 "$f"; done; }

dd if=/dev/urandom of="$d/munge/munge.key" bs=1024 count=1 status=none
chmod 0600 "$d/munge/munge.key"
munged -F --force --key-file="$d/munge/munge.key" --socket="$d/munge/munge.socket" \
  --pid-file="$d/munge/munged.pid" --log-file="$d/log/munged.log" \
  --seed-file="$d/munge/munged.seed" >>"$d/log/munged.log" 2>&1 &
daemons+=($!)
nodes=""
for ((i = 0; i < hosts; i++)); do nodes+="NodeName=h$i NodeAddr=$(mh_addr h$i) CPUs=2 State=UNKNOWN"$'\n'; done
cat >"$d/slurm.conf" <<CONF
ClusterName=tandemhosts
SlurmctldHost=h0($(mh_addr h0))
SlurmctldPort=6817
SlurmdPort=6818
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
TmpFS=/tmp
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
${nodes}PartitionName=debug Nodes=h[0-$((hosts - 1))] Default=YES MaxTime=INFINITE State=UP
CONF
export SLURM_CONF=$d/slurm.conf
on_h0() { mh_on h0 "$@"; }
wait_for() {  # SECONDS COMMAND...
  local deadline=$((SECONDS + $1))
  shift
  until "$@" >/dev/null 2>&1; do
    ((SECONDS < deadline)) || return 1
    sleep 0.5
  done
}
wait_for 20 test -S "$d/munge/munge.socket" || { logs; mh_fail "munged did not start"; }
mh_bg "$d/log/slurmctld.out" h0 slurmctld -D -i -f "$SLURM_CONF"
daemons+=($MH_PID)
wait_for 30 on_h0 scontrol ping || { logs; mh_fail "slurmctld did not answer"; }
for ((i = 0; i < hosts; i++)); do
  mh_bg "$d/log/slurmd-h$i.out" "h$i" slurmd -D -f "$SLURM_CONF"
  daemons+=($MH_PID)
done
all_idle() { [ "$(on_h0 sinfo -h -N -o '%t' | grep -c '^idle')" = "$hosts" ]; }
wait_for 90 all_idle || { on_h0 sinfo -N; logs; mh_fail "the $hosts slurmd did not become idle"; }
echo "Slurm: $(on_h0 sinfo -h -N -o '%N %t %c' | tr '\n' ' ')"

cfg=$src/configs/fashion_mnist_mlp.yaml
common=(strategy.name=ddp training.max_steps=8 data.batch_size=64 data.workers=1
        model.hidden=[64] training.precision=fp64 logging.progress=none logging.tensorboard=false
        training.eval_every_epoch=false checkpoint.resume=never)
"$tandem" train "$cfg" "${common[@]/strategy.name=ddp/strategy.name=single}" \
  checkpoint.dir="$MH_WORK/single/ck" logging.dir="$MH_WORK/single/log" >"$MH_WORK/single.log" 2>&1 ||
  mh_fail "the one-process reference failed: $(tail "$MH_WORK/single.log")"

job_state() { on_h0 scontrol show job -o "$1" 2>/dev/null | tr ' ' '\n' | sed -n 's/^JobState=//p'; }

run_job() {  # NAME NODES LAUNCHER
  local name=$1 n=$2 launcher=$3 out id state deadline
  out=$(on_h0 "$tandem" submit slurm "$cfg" --nodes "$n" --ntasks-per-node 2 --launcher "$launcher" \
    "${common[@]}" logging.dir="$MH_WORK/$name" checkpoint.dir="$MH_WORK/$name/ck" 2>&1) ||
    mh_fail "$name: submit failed: $out"
  id=$(sed -n 's/^submitted Slurm job \([0-9]*\)$/\1/p' <<<"$out")
  [ -n "$id" ] || mh_fail "$name: no job id in: $out"
  deadline=$((SECONDS + 240))
  while :; do
    state=$(job_state "$id")
    case "$state" in COMPLETED | FAILED | CANCELLED | TIMEOUT | NODE_FAIL | OUT_OF_MEMORY) break ;; esac
    ((SECONDS < deadline)) || { state="STILL_$state"; break; }
    sleep 1
  done
  if [ "$state" != COMPLETED ]; then
    tail -n 30 "$MH_WORK/$name"/slurm-"$id".{out,err} 2>/dev/null
    logs
    mh_fail "$name: job $id ended $state"
  fi
  grep -q "\"world_size\": *$((2 * n))" "$MH_WORK/$name"/ck/step-*/trainer_state.json ||
    mh_fail "$name: the checkpoint was not saved by a world of $((2 * n))"
  local dist
  dist=$(mh_distance "$MH_WORK/$name/ck" "$MH_WORK/single/ck") || mh_fail "$name: no checkpoint"
  /usr/bin/python3 -c "import sys; sys.exit(0 if float('$dist') <= 1e-9 else 1)" ||
    mh_fail "$name: differs from one process by $dist"
  local nodes_seen
  nodes_seen=$(grep -ho "tandem train: rank [0-9]* of $((2 * n)) .* on h[0-9]*" \
    "$MH_WORK/$name"/slurm-"$id".{out,err} | grep -o 'on h[0-9]*$' | sort -u | wc -l)
  [ "$nodes_seen" = "$n" ] || mh_fail "$name: ranks ran on $nodes_seen hosts, expected $n"
  echo "$name: job $id COMPLETED on $n nodes, max |w - w_single| = $dist"
  echo "  $(grep -h 'all-reduce\|final:' "$MH_WORK/$name"/slurm-"$id".{out,err} | head -2 | tr '\n' ' ')"
}

run_job launch2 2 tandem
grep -q "hierarchical all-reduce: 2 hosts x 2 ranks" "$MH_WORK"/launch2/slurm-*.{out,err} ||
  mh_fail "launch2 did not use the hierarchical all-reduce"
run_job mpi2 2 mpi
run_job launch4 4 tandem
run_job mpi4 4 mpi
echo PASS
