#!/usr/bin/env bash
# SIGTERM to the whole job (a preemption), 2 DDP ranks under `tandem launch` on one host:
#   group  -- `kill -TERM -- -PGID` on the process group of `tandem launch` (a shell's job
#             control, `timeout`, a supervisor that signals a group);
#   every  -- SIGTERM to every process of the job at once, as Slurm's slurmstepd does on scancel
#             or preemption (it signals every process of the step, not only the one it started):
#             each worker gets it directly and, a moment later, again from the agent, which
#             forwards it. The agent is signalled once the workers have taken theirs (none is
#             pending in /proc/PID/status: two pending SIGTERMs would merge into one), so the copy
#             reaches the chief while it saves (a 2048-2048 MLP: 50 MB of checkpoint, fsynced).
# Either way every rank must stop at the same step, the chief must save that step's checkpoint,
# the job must end with 128 + SIGTERM, leave no process and no /dev/shm segment behind, and the
# checkpoint must resume.
#
#   preemption.sh TANDEM_BINARY SOURCE_DIR group|every
set -uo pipefail
tandem=$1 src=$2 how=$3
source "$src/tests/faults/lib.sh"
ft_setup "preempt-$how"
cfg=$FT_WORK/exp.yaml
ck=$FT_WORK/ck
ft_experiment "$cfg" "strategy: {name: ddp, timeout_s: 60}" \
  "checkpoint: {dir: '$ck', every_steps: 0, resume: auto}"
model=(model.hidden=[2048,2048])

# No signal pending for PID any more: delivered to its handler (or it has exited).
signal_taken() {
  local k v
  [ -e "/proc/$1/status" ] || return 0
  while IFS=: read -r k v; do
    [ "$k" = ShdPnd ] && { [[ $v =~ ^[[:space:]]*0+$ ]]; return; }
  done <"/proc/$1/status"
  return 0
}

ft_bg "$FT_WORK/run.log" "$tandem" launch --nproc-per-node 2 --max-restarts 0 --stop-grace 20 "$cfg" "${model[@]}"
agent=$FT_PID
ft_until 60 test -s "$FT_WORK/log/metrics.jsonl" || { cat "$FT_WORK/run.log"; ft_fail "training never started"; }
ft_watch_shm
r0=$(ft_rank_pid 0) && r1=$(ft_rank_pid 1) || ft_fail "the two workers were not found"
case $how in
  group) kill -TERM -- "-$agent" ;;
  every)  # the workers' own SIGTERM first, then the agent's, whose copy comes a moment later
    kill -TERM "$r0" "$r1"
    ft_until 5 signal_taken "$r0" && ft_until 5 signal_taken "$r1"
    kill -TERM "$agent" ;;
  *) ft_fail "unknown case '$how'" ;;
esac
echo "SIGTERM ($how): agent $agent, rank 0 $r0, rank 1 $r1"
rc=0
ft_wait "$agent" 60 || rc=$?
[ $rc != 124 ] || ft_fail "the job still runs 60 s after SIGTERM"
cat "$FT_WORK/run.log" | grep -v "^\[rank [01]\] {" | tail -8
[ $rc = 143 ] || ft_fail "tandem launch exited $rc, expected 143 (128 + SIGTERM)"
steps=$(grep -o "\[rank [01]\] stopped at step [0-9]*" "$FT_WORK/run.log" | sort)
[ "$(grep -c . <<<"$steps")" = 2 ] || ft_fail "expected both ranks to stop and save, got: $steps"
s0=$(grep -o "rank 0\] stopped at step [0-9]*" <<<"$steps" | grep -o "[0-9]*$")
s1=$(grep -o "rank 1\] stopped at step [0-9]*" <<<"$steps" | grep -o "[0-9]*$")
[ "$s0" = "$s1" ] || ft_fail "the ranks stopped at different steps ($s0, $s1)"
echo "both ranks stopped after step $s0"
if [ "$how" = every ]; then
  grep -q "^\[rank [01]\] tandem train: SIGTERM again within 5 s of the first: the same stop request" \
    "$FT_WORK/run.log" || ft_fail "no worker got (or named) the agent's copy of the SIGTERM: the test did not make the fault"
  echo "got the SIGTERM twice and still stopped at one step: $(grep -o "^\[rank [01]\] tandem train: SIGTERM again" "$FT_WORK/run.log" | cut -c1-8 | paste -sd" ")"
fi
ft_check_clean
ft_check_resumes "$cfg" "$ck" "$s0" "${model[@]}"
echo PASS
