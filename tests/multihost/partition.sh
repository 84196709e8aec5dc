#!/usr/bin/env bash
# Network partitions on 3 emulated hosts x 1 rank (`tandem launch` on each, store on h0), made by
# taking h1's cable out at the switch:
#   1. for 3 s, less than every timeout: training goes on and completes, with no restart;
#   2. for longer than strategy.timeout_s: every host ends the job with an error that names what
#      it lost -- h0 and h2 the unreachable rank and host, h1 the store -- within the timeouts, and
#      no process is left on any host.
#
#   partition.sh TANDEM_BINARY SOURCE_DIR BUILD_DIR
set -uo pipefail
tandem=$1 src=$2 build=$3
source "$src/tests/multihost/lib.sh"
data=/usr/share/datasets/fashion-mnist
[[ -e $data/train-images-idx3-ubyte.gz ]] || mh_skip "$data not found"
mh_setup part 5 3
cfg=$src/configs/fashion_mnist_mlp.yaml
h0=$(mh_addr h0)
export TANDEM_JOB_TOKEN=mh-partition-token

start() {  # NAME PORT TIMEOUT_S HEARTBEAT_S RDZV_S STEPS: tandem launch on the 3 hosts
  local i
  pids=()
  for i in 0 1 2; do
    mh_bg "$MH_WORK/$1.h$i.log" "h$i" "$tandem" launch --nnodes 3 --node-rank $i \
      --rdzv-endpoint "$h0:$2" --nproc-per-node 1 --heartbeat-timeout "$4" --rdzv-timeout "$5" \
      --monitor-interval 0.5 --stop-grace 5 --max-restarts 1 "$cfg" strategy.name=ddp \
      strategy.timeout_s="$3" training.max_steps="$6" checkpoint.every_steps=100 data.workers=1 data.batch_size=96 \
      model.hidden=[64] logging.progress=none logging.tensorboard=false \
      training.eval_every_epoch=false checkpoint.dir="$MH_WORK/$1/ck" logging.dir="$MH_WORK/$1/log"
    pids+=("$MH_PID")
  done
}
wait_for_checkpoint() {
  for _ in $(seq 900); do
    compgen -G "$1/step-*" >/dev/null && return 0
    sleep 0.1
  done
  return 1
}

# --- 1. a 3 s partition
start short 29801 30 20 60 2500
wait_for_checkpoint "$MH_WORK/short/ck" || mh_fail "no checkpoint before the partition"
"$MH_CLUSTER_SH" link h1 down
sleep 3
"$MH_CLUSTER_SH" link h1 up
for i in 0 1 2; do
  mh_wait "${pids[$i]}" 300 || { tail -20 "$MH_WORK/short.h$i.log"; mh_fail "short partition: h$i failed"; }
done
grep -q "restarting" "$MH_WORK"/short.h*.log && mh_fail "a 3 s partition restarted the job"
grep -q "final: epoch=.* step=2500 " "$MH_WORK/short.h0.log" || mh_fail "short partition: no final line"
echo "3 s partition: the job went on and completed ($(grep -o 'final: .*' "$MH_WORK/short.h0.log"))"

# --- 2. a partition longer than every timeout
timeout_s=8 heartbeat_s=6 rdzv_s=20
start long 29802 $timeout_s $heartbeat_s $rdzv_s 1000000
wait_for_checkpoint "$MH_WORK/long/ck" || mh_fail "no checkpoint before the partition"
"$MH_CLUSTER_SH" link h1 down
t0=$SECONDS
limit=$((timeout_s + rdzv_s + 30))
for i in 0 1 2; do
  rc=0
  mh_wait "${pids[$i]}" $((limit - (SECONDS - t0))) || rc=$?
  [ $rc = 124 ] && { tail -20 "$MH_WORK/long.h$i.log"; mh_fail "h$i still runs $limit s into the partition"; }
  [ $rc != 0 ] || mh_fail "h$i exited 0 after losing a peer"
done
echo "every host ended the job $((SECONDS - t0)) s into the partition"
for h in h0 h2; do
  grep -q "rank 1 did not arrive" "$MH_WORK/long.$h.log" ||
    { tail -20 "$MH_WORK/long.$h.log"; mh_fail "$h's error does not name the unreachable rank"; }
  grep -q "host h1 (node 1, rank 1) lost" "$MH_WORK/long.$h.log" ||
    { tail -20 "$MH_WORK/long.$h.log"; mh_fail "$h does not name the unreachable host"; }
  echo "$h: $(grep -o 'rank 1 did not arrive[^;]*' "$MH_WORK/long.$h.log" | head -1); $(grep -o 'host h1 (node 1, rank 1) lost: [^;]*' "$MH_WORK/long.$h.log" | head -1)"
done
grep -q "lost the store at $h0:29802" "$MH_WORK/long.h1.log" ||
  { tail -20 "$MH_WORK/long.h1.log"; mh_fail "h1 does not say it lost the store"; }
echo "h1: $(grep -o 'lost the store at [^:]*:[0-9]*' "$MH_WORK/long.h1.log" | head -1)"
"$MH_CLUSTER_SH" link h1 up
for h in h0 h1 h2; do
  [ -z "$("$MH_CLUSTER_SH" pids $h)" ] || mh_fail "processes left on $h: $("$MH_CLUSTER_SH" pids $h)"
done
echo PASS
