#!/usr/bin/env bash
# SIGKILL of a worker on another host than the store's, on 2 emulated hosts x 2 ranks
# (hierarchical all-reduce; `tandem launch --max-restarts 1` on each): rank 2, on h1, is killed
# after the first checkpoint. Both agents must name it, stop their workers and start a new round
# together; the workers resume from the newest checkpoint, the job completes on both hosts, and no
# process or /dev/shm segment is left on either.
#
#   mh_worker_kill.sh TANDEM_BINARY SOURCE_DIR BUILD_DIR
set -uo pipefail
tandem=$1 src=$2 build=$3
source "$src/tests/multihost/lib.sh"
source "$src/tests/faults/lib.sh"
mh_setup fworker 11 2
FT_WORK=$MH_WORK
cfg=$MH_WORK/exp.yaml
ck=$MH_WORK/ck
steps=1500
ft_experiment "$cfg" "strategy: {name: ddp, timeout_s: 60}" \
  "checkpoint: {dir: '$ck', every_steps: 100, resume: auto}"
h0=$(mh_addr h0)
export TANDEM_JOB_TOKEN=faults-worker-kill-token
agents=()
for i in 0 1; do
  mh_bg "$MH_WORK/h$i.log" "h$i" "$tandem" launch --nnodes 2 --node-rank $i --rdzv-endpoint "$h0:29901" \
    --nproc-per-node 2 --heartbeat-timeout 5 --monitor-interval 0.5 --max-restarts 1 --stop-grace 5 \
    --rdzv-timeout 60 "$cfg" training.max_steps=$steps
  agents+=("$MH_PID")
done
ft_until 120 ft_has_checkpoint "$ck" || { tail "$MH_WORK"/h*.log; ft_fail "no first checkpoint"; }
victim=$(ft_host_rank_pid h1 2) || ft_fail "no rank 2 on h1"
kill -KILL "$victim"
echo "SIGKILL to rank 2 (pid $victim, on h1)"
restarting() { grep -q "restarting all 4 workers" "$MH_WORK/h0.log"; }
ft_until 60 restarting || { tail "$MH_WORK"/h*.log; ft_fail "h0's agent did not restart within 60 s"; }
newest=$(ft_newest_step "$ck")  # every worker is gone now, the new round starts after the backoff
for i in 0 1; do
  rc=0
  mh_wait "${agents[$i]}" 180 || rc=$?
  [ $rc = 0 ] || { tail -20 "$MH_WORK/h$i.log"; ft_fail "h$i's agent exited $rc"; }
done
for i in 0 1; do
  ft_show "tandem launch: worker rank 2 exited with status 137 (killed by SIGKILL); restarting all 4 workers.*" \
    "$MH_WORK/h$i.log" | sed "s/^/h$i: /" || ft_fail "h$i's agent did not name rank 2 and restart"
done
grep -q "resumed from $(ft_checkpoint "$ck" "$newest") (step $newest" "$MH_WORK/h0.log" ||
  { grep resumed "$MH_WORK"/h*.log; ft_fail "the new round did not resume from step $newest, the newest"; }
echo "$(ft_show "resumed from [^ ]* (step [0-9]*" "$MH_WORK/h0.log")"
grep -q "final: epoch=[0-9]* step=$steps " "$MH_WORK/h0.log" || ft_fail "the job did not reach step $steps"
ft_host_clean h0 h1
ft_check_resumes "$cfg" "$ck" "$steps"
echo PASS
