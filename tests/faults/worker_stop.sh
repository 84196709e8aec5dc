#!/usr/bin/env bash
# SIGSTOP of a worker for longer than the heartbeat timeout, 2 DDP ranks under `tandem launch
# --heartbeat-timeout 3 --max-restarts 1` (strategy.timeout_s 60, so the heartbeat, not a
# collective's deadline, is what notices): within the timeout (plus one monitor interval) the agent
# must name the silent rank, stop both workers -- the frozen one and the one waiting for it in a
# collective only die of SIGKILL when the stop grace ends -- and restart them from the newest
# checkpoint; the job completes and leaves no process and no segment behind.
#
#   worker_stop.sh TANDEM_BINARY SOURCE_DIR
set -uo pipefail
tandem=$1 src=$2
source "$src/tests/faults/lib.sh"
ft_setup worker-stop
cfg=$FT_WORK/exp.yaml
ck=$FT_WORK/ck
steps=4000
hb=3
ft_experiment "$cfg" "strategy: {name: ddp, timeout_s: 60}" \
  "checkpoint: {dir: '$ck', every_steps: 100, resume: auto}"

ft_bg "$FT_WORK/run.log" "$tandem" launch --nproc-per-node 2 --max-restarts 1 --heartbeat-timeout $hb \
  --monitor-interval 0.5 --stop-grace 3 "$cfg" training.max_steps=$steps
agent=$FT_PID
ft_until 60 ft_has_checkpoint "$ck" || { cat "$FT_WORK/run.log"; ft_fail "no first checkpoint"; }
ft_watch_shm
stopped=$(ft_rank_pid 1) || ft_fail "no rank 1 found"
kill -STOP "$stopped"
t0=$SECONDS
echo "SIGSTOP to rank 1 (pid $stopped)"
named() { grep -q "worker rank 1 sent no heartbeat for" "$FT_WORK/run.log"; }
ft_until $((hb + 5)) named || { tail "$FT_WORK/run.log"; ft_fail "the agent did not name rank 1 within $((hb + 5)) s"; }
echo "after $((SECONDS - t0)) s: $(ft_show "worker rank 1 sent no heartbeat for .*" "$FT_WORK/run.log")"
newest=$(ft_newest_step "$ck")  # the line comes once both workers are gone: nothing saves now
echo "newest checkpoint: step $newest"
rc=0
ft_wait "$agent" 120 || rc=$?
[ $rc != 124 ] || ft_fail "the job still runs 120 s after the stop"
[ $rc = 0 ] || { tail -20 "$FT_WORK/run.log"; ft_fail "the restarted job exited $rc"; }
kill -0 "$stopped" 2>/dev/null && ft_fail "the stopped worker (pid $stopped) is still there"
grep -q "resumed from $(ft_checkpoint "$ck" "$newest") (step $newest" "$FT_WORK/run.log" ||
  { grep resumed "$FT_WORK/run.log"; ft_fail "the restart did not resume from step $newest"; }
grep -q "final: epoch=[0-9]* step=$steps " "$FT_WORK/run.log" || ft_fail "the job did not reach step $steps"
echo "restarted: $(ft_show "resumed from [^ ]* (step [0-9]*" "$FT_WORK/run.log"); completed step $steps"
ft_check_clean
ft_check_resumes "$cfg" "$ck" "$steps"
echo PASS
