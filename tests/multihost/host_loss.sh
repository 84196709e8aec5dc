#!/usr/bin/env bash
# Losing a host, on 2 emulated hosts x 2 ranks (hierarchical all-reduce), `tandem launch` on each:
#   1. h1 lost mid-run (every process of its namespace SIGKILLed, after the first checkpoint): h0's
#      agent names the host and its ranks within the heartbeat timeout, stops its workers and
#      waits; h1's `tandem launch` started again takes its node over, the job re-forms, resumes
#      from the newest checkpoint and ends with the same weights, bit for bit, as a run nobody
#      killed; no segment is left in either host's /dev/shm.
#   2. h0 lost (the store's host): h1's agent ends the job within the heartbeat timeout, saying it
#      lost the store, and leaves no process behind.
#
#   host_loss.sh TANDEM_BINARY SOURCE_DIR BUILD_DIR
set -uo pipefail
tandem=$1 src=$2 build=$3
source "$src/tests/multihost/lib.sh"
data=/usr/share/datasets/fashion-mnist
[[ -e $data/train-images-idx3-ubyte.gz ]] || mh_skip "$data not found"
/usr/bin/python3 -c 'import torch' 2>/dev/null || mh_skip "python3-torch not installed"
mh_setup loss 2 2
cfg=$src/configs/fashion_mnist_mlp.yaml
common=(strategy.name=ddp training.max_steps=500 checkpoint.every_steps=100 data.workers=1
        model.hidden=[64] logging.progress=none logging.tensorboard=false
        training.eval_every_epoch=false)
hb=5   # --heartbeat-timeout, seconds
h0=$(mh_addr h0)
port=29600
export TANDEM_JOB_TOKEN=mh-host-loss-token

agent() {  # NAME NODE [LOG]: this node's `tandem launch` in the background (pid in MH_PID)
  mh_bg "$MH_WORK/${3:-$1.h$2.log}" "h$2" "$tandem" launch --nnodes 2 --node-rank "$2" \
    --rdzv-endpoint "$h0:$port" --nproc-per-node 2 --heartbeat-timeout $hb --monitor-interval 0.5 \
    --max-restarts 2 --rdzv-timeout 60 --stop-grace 5 "$cfg" "${common[@]}" \
    checkpoint.dir="$MH_WORK/$1/ck" logging.dir="$MH_WORK/$1/log"
}

wait_for_checkpoint() {  # DIR
  for _ in $(seq 600); do
    compgen -G "$1/step-*" >/dev/null && return 0
    sleep 0.1
  done
  return 1
}

# "tandem train" processes running on HOST.
trainers_on() {
  local pid n=0
  for pid in $("$MH_CLUSTER_SH" pids "$1"); do
    tr '\0' ' ' </proc/"$pid"/cmdline 2>/dev/null | grep -q " train " && n=$((n + 1))
  done
  echo $n
}

# --- the reference: nobody killed
port=$((port + 1))
agent clean 0; a0=$MH_PID
agent clean 1; a1=$MH_PID
mh_wait $a0 240 && mh_wait $a1 240 || { tail "$MH_WORK"/clean.*.log; mh_fail "the clean run failed"; }

# --- 1. h1 lost, then started again
port=$((port + 1))
agent killed 0; a0=$MH_PID
agent killed 1
wait_for_checkpoint "$MH_WORK/killed/ck" || mh_fail "no checkpoint was written to kill after"
"$MH_CLUSTER_SH" kill h1
t0=$SECONDS
log0=$MH_WORK/killed.h0.log
until grep -q "host h1 (node 1, ranks 2-3) lost: its agent sent no heartbeat" "$log0"; do
  ((SECONDS - t0 <= hb + 5)) || { cat "$log0"; mh_fail "h0 did not name the lost host within $((hb + 5)) s"; }
  kill -0 $a0 2>/dev/null || { cat "$log0"; mh_fail "h0's agent exited instead of waiting for h1"; }
  sleep 0.2
done
echo "h0 named the lost host after $((SECONDS - t0)) s: $(grep -o 'host h1 (node 1, ranks 2-3) lost[^;]*' "$log0" | head -1)"
sleep 1
[ "$(trainers_on h0)" = 0 ] || mh_fail "h0's workers still run while h1 is lost"
agent killed 1 killed.h1.again.log; a1=$MH_PID  # h1 comes back (a Kubernetes pod restarted, a Slurm requeue)
mh_wait $a0 240 || { tail -20 "$log0"; mh_fail "h0's agent did not finish after h1 came back"; }
mh_wait $a1 240 || { tail -20 "$MH_WORK/killed.h1.again.log"; mh_fail "the restarted h1 did not finish"; }
grep -q "taking it over" "$MH_WORK/killed.h1.again.log" || mh_fail "the new h1 agent did not take node 1 over"
grep -q "resumed from" "$MH_WORK"/killed.h*.log || mh_fail "the workers did not resume from a checkpoint"
d=$(mh_distance "$MH_WORK/killed/ck" "$MH_WORK/clean/ck")
echo "killed-and-rejoined run vs clean run: max |w - w'| = $d"
[ "$d" = "0.000e+00" ] || mh_fail "the rejoined run does not end with the clean run's weights"
for h in h0 h1; do
  left=$(mh_on $h sh -c 'ls /dev/shm | grep -c "^tandem-" || true')
  [ "$left" = 0 ] || mh_fail "$left shared-memory segment(s) left in $h's /dev/shm"
done

# --- 2. h0 lost: the store goes with it
port=$((port + 1))
agent storeloss 0
agent storeloss 1; a1=$MH_PID
wait_for_checkpoint "$MH_WORK/storeloss/ck" || mh_fail "no checkpoint was written to kill after"
"$MH_CLUSTER_SH" kill h0
t0=$SECONDS
rc=0
mh_wait $a1 $((hb + 30)) || rc=$?
[ $rc = 124 ] && mh_fail "h1's agent still runs $((hb + 30)) s after the store's host was lost"
[ $rc != 0 ] || mh_fail "h1's agent exited 0 after losing the store"
echo "h1's agent exited $rc after $((SECONDS - t0)) s: $(grep 'lost the store' "$MH_WORK"/storeloss.h1.log | tail -1)"
grep -q "lost the store at $h0:$port (node 0's host)" "$MH_WORK"/storeloss.h1.log ||
  { tail "$MH_WORK"/storeloss.h1.log; mh_fail "h1's agent did not say it lost the store"; }
((SECONDS - t0 <= hb + 10)) || mh_fail "h1 took $((SECONDS - t0)) s to give up (heartbeat timeout $hb s)"
[ -z "$("$MH_CLUSTER_SH" pids h1)" ] || mh_fail "processes left on h1: $("$MH_CLUSTER_SH" pids h1)"
echo PASS
