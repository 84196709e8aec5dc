#!/usr/bin/env bash
# SIGSTOP of node 0's agent (it hosts the store) for 40 s, on 2 emulated hosts x 1 rank, with
# --heartbeat-timeout 10 (a quarter of the freeze) and the default --rdzv-timeout 300: the store is
# frozen, the workers' all-reduces are not (they go host to host). The job must ride it out --
# h1's agent says the store does not answer and keeps asking; nobody is declared lost or restarted,
# during the freeze or after SIGCONT (when node 0's agent reads heartbeats the frozen store could
# not take), and training goes on throughout. Then a SIGTERM to node 0's agent (the job's end)
# must stop both ranks at one step with its checkpoint, both agents exit 143 / 1, and no process or
# /dev/shm segment may be left on either host.
#
#   mh_agent0_stop.sh TANDEM_BINARY SOURCE_DIR BUILD_DIR
set -uo pipefail
tandem=$1 src=$2 build=$3
source "$src/tests/multihost/lib.sh"
source "$src/tests/faults/lib.sh"
mh_setup fagentstop 13 2
FT_WORK=$MH_WORK
cfg=$MH_WORK/exp.yaml
ck=$MH_WORK/ck
freeze_s=40
ft_experiment "$cfg" "strategy: {name: ddp, timeout_s: 600}" \
  "checkpoint: {dir: '$ck', every_steps: 500, resume: auto}"
h0=$(mh_addr h0)
export TANDEM_JOB_TOKEN=faults-agent-stop-token
agents=()
for i in 0 1; do
  mh_bg "$MH_WORK/h$i.log" "h$i" "$tandem" launch --nnodes 2 --node-rank $i --rdzv-endpoint "$h0:29903" \
    --nproc-per-node 1 --heartbeat-timeout 10 --monitor-interval 0.5 --max-restarts 1 --stop-grace 10 \
    "$cfg" training.max_steps=100000000
  agents+=("$MH_PID")
done
ft_until 120 ft_has_checkpoint "$ck" || { tail "$MH_WORK"/h*.log; ft_fail "no first checkpoint"; }
agent0=${agents[0]}
kill -STOP "$agent0"
echo "SIGSTOP to node 0's agent (pid $agent0) for $freeze_s s at step $(ft_last_logged_step)"
sleep 10
during=$(ft_last_logged_step)
sleep $((freeze_s - 10))
kill -CONT "$agent0"
echo "SIGCONT; step $during 10 s into the freeze, $(ft_last_logged_step) at its end"
sleep 8
after=$(ft_last_logged_step)
echo "step $after 8 s later"
for i in 0 1; do kill -0 "${agents[$i]}" 2>/dev/null || { tail "$MH_WORK/h$i.log"; ft_fail "h$i's agent exited"; }; done
grep -v "^\[rank [01]\] {" "$MH_WORK"/h*.log | grep "tandem launch:" | tail -6
grep -E "restarting|lost|no heartbeat" "$MH_WORK"/h*.log && ft_fail "the freeze restarted the job or lost a host"
((after > during)) || ft_fail "training did not go on after the freeze (step $during, then $after)"
kill -TERM "$agent0"
rc0=0 rc1=0
mh_wait "${agents[0]}" 60 || rc0=$?
mh_wait "${agents[1]}" 60 || rc1=$?
[ $rc0 != 124 ] && [ $rc1 != 124 ] || ft_fail "the job still runs 60 s after SIGTERM"
echo "after SIGTERM to node 0's agent: h0's agent exited $rc0, h1's $rc1"
[ $rc0 = 143 ] || ft_fail "h0's agent exited $rc0, expected 143"
steps=$(grep -ho "\[rank [01]\] stopped at step [0-9]*" "$MH_WORK"/h*.log | grep -o "[0-9]*$" | sort -u)
[ "$(grep -c . <<<"$steps")" = 1 ] || ft_fail "the ranks did not stop at one step: $steps"
[ "$(ft_newest_step "$ck")" = "$steps" ] || ft_fail "no checkpoint of step $steps"
ft_host_clean h0 h1
ft_check_resumes "$cfg" "$ck" "$steps"
echo PASS
