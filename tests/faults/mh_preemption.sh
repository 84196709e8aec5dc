#!/usr/bin/env bash
# SIGTERM to every process of a job on 2 emulated hosts x 2 ranks (a multi-node Slurm job
# preempted or cancelled: slurmstepd signals every process of the step on every node), workers
# first and then the agents, whose forwards reach the workers again. Every rank on both hosts must
# stop at one step, the chief must save it, both agents must exit 143, nothing may be left on
# either host, and the checkpoint must resume.
#
#   mh_preemption.sh TANDEM_BINARY SOURCE_DIR BUILD_DIR
set -uo pipefail
tandem=$1 src=$2 build=$3
source "$src/tests/multihost/lib.sh"
source "$src/tests/faults/lib.sh"
mh_setup fpreempt 14 2
FT_WORK=$MH_WORK
cfg=$MH_WORK/exp.yaml
ck=$MH_WORK/ck
ft_experiment "$cfg" "strategy: {name: ddp, timeout_s: 60}" \
  "checkpoint: {dir: '$ck', every_steps: 0, resume: auto}"
h0=$(mh_addr h0)
export TANDEM_JOB_TOKEN=faults-preemption-token
agents=()
for i in 0 1; do
  mh_bg "$MH_WORK/h$i.log" "h$i" "$tandem" launch --nnodes 2 --node-rank $i --rdzv-endpoint "$h0:29904" \
    --nproc-per-node 2 --heartbeat-timeout 10 --max-restarts 1 --stop-grace 20 "$cfg" \
    training.max_steps=100000000 model.hidden=[1024,1024]
  agents+=("$MH_PID")
done
ft_until 120 test -s "$MH_WORK/log/metrics.jsonl" || { tail "$MH_WORK"/h*.log; ft_fail "training never started"; }
workers=()
for h in h0 h1; do
  for r in 0 1 2 3; do p=$(ft_host_rank_pid $h $r) && workers+=("$p"); done
done
[ ${#workers[@]} = 4 ] || ft_fail "expected 4 workers, found ${#workers[@]}"
kill -TERM "${workers[@]}"
kill -TERM "${agents[@]}"
echo "SIGTERM to the 4 workers (${workers[*]}), then to both agents (${agents[*]})"
for i in 0 1; do
  rc=0
  mh_wait "${agents[$i]}" 60 || rc=$?
  [ $rc = 143 ] || { tail "$MH_WORK/h$i.log"; ft_fail "h$i's agent exited $rc, expected 143"; }
done
steps=$(grep -ho "\[rank [0-3]\] stopped at step [0-9]*" "$MH_WORK"/h*.log | sort)
echo "$steps"
[ "$(grep -c . <<<"$steps")" = 4 ] || ft_fail "expected all 4 ranks to report their stop"
step=$(grep -o "[0-9]*$" <<<"$steps" | sort -u)
[ "$(grep -c . <<<"$step")" = 1 ] || ft_fail "the ranks stopped at different steps"
[ "$(ft_newest_step "$ck")" = "$step" ] || ft_fail "no checkpoint of step $step"
copies=$(cat "$MH_WORK"/h*.log | grep -c "tandem train: SIGTERM again within 5 s of the first")
echo "every rank stopped after step $step and it is saved; $copies of 4 workers got the SIGTERM twice"
ft_host_clean h0 h1
ft_check_resumes "$cfg" "$ck" "$step" model.hidden=[1024,1024]
echo PASS
