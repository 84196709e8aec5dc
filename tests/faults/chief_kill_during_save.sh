#!/usr/bin/env bash
# SIGKILL of the chief (rank 0) in the middle of a checkpoint save, 2 DDP ranks under `tandem
# launch --max-restarts 1`: the kill lands while the save's temporary directory
# (.tmp-step-N-<pid>) exists and step-N does not. The half-written save must never be taken for a
# checkpoint: the job restarts from the newest complete one (an earlier step), completes, the next
# save removes the dead save's temporary directory, and nothing of the job is left behind.
# The MLP is 2048-2048 (50 MB per checkpoint with Adam's moments, fsynced), so a save lasts long
# enough to be caught by polling the directory.
#
#   chief_kill_during_save.sh TANDEM_BINARY SOURCE_DIR
set -uo pipefail
tandem=$1 src=$2
source "$src/tests/faults/lib.sh"
ft_setup chief-save
cfg=$FT_WORK/exp.yaml
ck=$FT_WORK/ck
steps=120
ft_experiment "$cfg" "strategy: {name: ddp, timeout_s: 60}" \
  "checkpoint: {dir: '$ck', every_steps: 20, keep: 5, resume: auto}"
model=(model.hidden=[2048,2048])

ft_bg "$FT_WORK/run.log" "$tandem" launch --nproc-per-node 2 --max-restarts 1 --stop-grace 10 \
  "$cfg" "${model[@]}" training.max_steps=$steps
agent=$FT_PID
ft_until 120 ft_has_checkpoint "$ck" || { cat "$FT_WORK/run.log"; ft_fail "no first checkpoint"; }
ft_watch_shm
chief=$(ft_rank_pid 0) || ft_fail "no chief found"
complete=$(ft_newest_step "$ck")
# The next save of the chief: its temporary directory appears; SIGKILL at once.
tmp=""
deadline=$((SECONDS + 60))
while ((SECONDS < deadline)); do
  for d in "$ck"/.tmp-step-*-"$chief"; do
    [ -d "$d" ] && { tmp=$d; break 2; }
  done
done
[ -n "$tmp" ] || ft_fail "the chief never started another save"
kill -KILL "$chief"
name=${tmp##*/.tmp-}
name=${name%-"$chief"}
[ -d "$ck/$name" ] && ft_fail "the save of $name completed before the kill: the test did not make the fault"
echo "SIGKILL to the chief (pid $chief) while it wrote $name: $(ls "$tmp" 2>/dev/null | paste -sd' ') in ${tmp##*/}"
newest=$(ft_newest_step "$ck")
echo "newest complete checkpoint at the kill: step $newest (first seen: step $complete)"

rc=0
ft_wait "$agent" 180 || rc=$?
[ $rc != 124 ] || ft_fail "the job still runs 180 s after the kill"
[ $rc = 0 ] || { tail -20 "$FT_WORK/run.log"; ft_fail "the restarted job exited $rc"; }
ft_show "tandem launch: worker rank 0 exited with status 137 (killed by SIGKILL)[^;]*; restarting.*" "$FT_WORK/run.log" ||
  ft_fail "the agent did not name the killed chief"
resumed=$(ft_checkpoint "$ck" "$newest")
grep -q "resumed from $resumed (step $newest" "$FT_WORK/run.log" ||
  { grep "resumed" "$FT_WORK/run.log"; ft_fail "the restart did not resume from $resumed, the newest complete checkpoint"; }
echo "restarted: $(ft_show "resumed from [^ ]* (step [0-9]*" "$FT_WORK/run.log")"
grep -q "final: epoch=[0-9]* step=$steps " "$FT_WORK/run.log" || ft_fail "the job did not reach step $steps"
left=$(ls -a "$ck" | grep '^\.tmp-' || true)
[ -z "$left" ] || ft_fail "temporary directories left in $ck: $left"
echo "the dead save's ${tmp##*/} was removed; checkpoints: $(ls "$ck" | paste -sd' ')"
ft_check_clean
ft_check_resumes "$cfg" "$ck" "$steps" "${model[@]}"
echo PASS
