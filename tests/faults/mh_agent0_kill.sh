#!/usr/bin/env bash
# SIGKILL of node 0's agent (it hosts the store) on 2 emulated hosts x 2 ranks, `tandem launch` on
# each: h0's workers learn it from the kernel (PR_SET_PDEATHSIG: SIGTERM) and ask to stop; the stop
# travels with the step's loss all-reduce, so every rank on both hosts stops at the same step and
# the chief (on h0) saves it. h1's agent must then say it lost the store on node 0's host and end
# the job (exit non-zero, no restart is possible) within its heartbeat timeout; no process and no
# /dev/shm segment may be left on either host, and the checkpoint must resume.
#
#   mh_agent0_kill.sh TANDEM_BINARY SOURCE_DIR BUILD_DIR
set -uo pipefail
tandem=$1 src=$2 build=$3
source "$src/tests/multihost/lib.sh"
source "$src/tests/faults/lib.sh"
mh_setup fagentkill 12 2
FT_WORK=$MH_WORK
cfg=$MH_WORK/exp.yaml
ck=$MH_WORK/ck
hb=5
ft_experiment "$cfg" "strategy: {name: ddp, timeout_s: 60}" \
  "checkpoint: {dir: '$ck', every_steps: 100, resume: auto}"
h0=$(mh_addr h0)
export TANDEM_JOB_TOKEN=faults-agent-kill-token
agents=()
for i in 0 1; do
  mh_bg "$MH_WORK/h$i.log" "h$i" "$tandem" launch --nnodes 2 --node-rank $i --rdzv-endpoint "$h0:29902" \
    --nproc-per-node 2 --heartbeat-timeout $hb --monitor-interval 0.5 --max-restarts 1 --stop-grace 5 \
    --rdzv-timeout 60 "$cfg" training.max_steps=1000000
  agents+=("$MH_PID")
done
ft_until 120 ft_has_checkpoint "$ck" || { tail "$MH_WORK"/h*.log; ft_fail "no first checkpoint"; }
agent0=""
for p in $("$MH_CLUSTER_SH" pids h0); do
  tr '\0' ' ' <"/proc/$p/cmdline" 2>/dev/null | grep -q " launch " && agent0=$p
done
[ -n "$agent0" ] || ft_fail "no agent found on h0"
before=$(ft_newest_step "$ck")
kill -KILL "$agent0"
t0=$SECONDS
echo "SIGKILL to node 0's agent (pid $agent0, on h0); newest checkpoint: step $before"
rc=0
mh_wait "${agents[1]}" $((hb + 30)) || rc=$?
[ $rc != 124 ] || { tail "$MH_WORK/h1.log"; ft_fail "h1's agent still runs $((hb + 30)) s after node 0's agent died"; }
[ $rc != 0 ] || ft_fail "h1's agent exited 0 after losing the store"
echo "h1's agent exited $rc after $((SECONDS - t0)) s"
grep -v "^\[rank [0-3]\] {" "$MH_WORK/h1.log" | tail -4
ft_show "lost the store at $h0:29902 (node 0's host).*" "$MH_WORK/h1.log" ||
  ft_fail "h1's agent did not say it lost the store on node 0's host"
steps=$(grep -ho "\[rank [0-3]\] stopped at step [0-9]*" "$MH_WORK"/h1.log | grep -o "[0-9]*$" | sort -u)
echo "h1's ranks stopped at step(s): $steps"
[ "$(grep -c . <<<"$steps")" = 1 ] || ft_fail "h1's ranks did not stop at one step"
after=$(ft_newest_step "$ck")
[ "$after" = "$steps" ] || ft_fail "the chief did not save step $steps, where every rank stopped (newest: $after)"
ft_host_clean h0 h1
ft_check_resumes "$cfg" "$ck" "$after"
echo PASS
