#!/usr/bin/env bash
# SIGKILL of the agent (`tandem launch`, node 0's and the only one; it hosts the store) while 2
# DDP ranks train on one host. Nobody is left to forward signals, read the workers' output or
# clean /dev/shm: each worker is told by the kernel (PR_SET_PDEATHSIG: SIGTERM), so both must stop
# at the same step, the chief must save that step, both must exit within the stop grace (no
# orphan), and nothing of the job may stay in /dev/shm. The checkpoint must resume. The chief logs
# every step, so "the stop was saved" reads: the newest checkpoint is the last step it logged.
#
#   agent_kill.sh TANDEM_BINARY SOURCE_DIR
set -uo pipefail
tandem=$1 src=$2
source "$src/tests/faults/lib.sh"
ft_setup agent-kill
cfg=$FT_WORK/exp.yaml
ck=$FT_WORK/ck
ft_experiment "$cfg" "strategy: {name: ddp, timeout_s: 60}" \
  "checkpoint: {dir: '$ck', every_steps: 100, resume: auto}"

ft_bg "$FT_WORK/run.log" "$tandem" launch --nproc-per-node 2 --max-restarts 1 "$cfg"
agent=$FT_PID
ft_until 60 ft_has_checkpoint "$ck" || { cat "$FT_WORK/run.log"; ft_fail "no first checkpoint"; }
ft_watch_shm
before=$(ft_newest_step "$ck")
kill -KILL "$agent"
t0=$SECONDS
wait "$agent" 2>/dev/null
echo "SIGKILL to the agent (pid $agent) after the checkpoint of step $before"
ft_until 30 ft_no_job_pids || ft_fail "workers still run 30 s after their agent died: $(ft_job_pids | paste -sd' ')"
echo "every worker exited $((SECONDS - t0)) s after the agent died"
after=$(ft_newest_step "$ck")
last=$(ft_last_logged_step)
echo "last step trained: $last; newest checkpoint: step $after"
((after > before)) && [ "$after" = "$last" ] ||
  ft_fail "the workers did not save the step they stopped at (trained to step $last, newest checkpoint step $after)"
ft_check_clean
ft_check_resumes "$cfg" "$ck" "$after"
echo PASS
