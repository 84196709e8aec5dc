#!/usr/bin/env bash
# A rank whose training thread makes no progress while its heartbeat thread runs (a loop that
# never ends, I/O that never returns), 2 DDP ranks under `tandem launch --heartbeat-timeout 3
# --max-restarts 1` with strategy.timeout_s 6. Rank 1's main thread is held by hold_thread.py
# (ptrace: that thread alone stops; SIGSTOP would stop the heartbeat too). Its heartbeats go on,
# so the agent must not call it silent; the promise is that strategy.timeout_s bounds the wait:
# rank 0's collective must time out naming rank 1, the agent must restart the job (the held rank
# dies of SIGKILL when the stop grace ends), which resumes from the newest checkpoint and completes,
# leaving no process and no segment behind.
#
#   rank_spin.sh TANDEM_BINARY SOURCE_DIR
set -uo pipefail
tandem=$1 src=$2
source "$src/tests/faults/lib.sh"
[ "$(id -u)" = 0 ] || ft_skip "holding a thread (ptrace) needs root"
ft_setup rank-spin
cfg=$FT_WORK/exp.yaml
ck=$FT_WORK/ck
steps=4000
timeout_s=6
ft_experiment "$cfg" "strategy: {name: ddp, timeout_s: $timeout_s}" \
  "checkpoint: {dir: '$ck', every_steps: 100, resume: auto}"

ft_bg "$FT_WORK/run.log" "$tandem" launch --nproc-per-node 2 --max-restarts 1 --heartbeat-timeout 3 \
  --monitor-interval 0.5 --stop-grace 3 "$cfg" training.max_steps=$steps
agent=$FT_PID
ft_until 60 ft_has_checkpoint "$ck" || { cat "$FT_WORK/run.log"; ft_fail "no first checkpoint"; }
ft_watch_shm
held=$(ft_rank_pid 1) || ft_fail "no rank 1 found"
/usr/bin/python3 "$src/tests/faults/hold_thread.py" "$held" >"$FT_WORK/hold.log" 2>&1 &
holder=$!
holding() { grep -q "holding $held" "$FT_WORK/hold.log" || ! kill -0 "$holder" 2>/dev/null; }
ft_until 10 holding
if ! grep -q "holding $held" "$FT_WORK/hold.log"; then
  rc=0
  wait "$holder" || rc=$?
  cat "$FT_WORK/hold.log"
  [ $rc = 77 ] && ft_skip "ptrace is not allowed here"
  ft_fail "could not hold rank 1's main thread"
fi
t0=$SECONDS
echo "rank 1's main thread (tid $held) held; its other threads run"
failed() { grep -q "tandem launch: worker rank 0 exited with status 1.*restarting" "$FT_WORK/run.log"; }
ft_until $((timeout_s + 15)) failed || { tail "$FT_WORK/run.log"; ft_fail "no restart within $((timeout_s + 15)) s"; }
echo "after $((SECONDS - t0)) s: $(ft_show "tandem launch: worker rank 0 exited.*" "$FT_WORK/run.log")"
ft_show "\[rank 0\] tandem: error: .*rank 1 did not arrive.*" "$FT_WORK/run.log" ||
  { grep "error" "$FT_WORK/run.log"; ft_fail "rank 0's error does not name rank 1"; }
grep -q "sent no heartbeat" "$FT_WORK/run.log" && ft_fail "the agent called rank 1 silent: its heartbeat thread was running"
newest=$(ft_newest_step "$ck")
rc=0
ft_wait "$agent" 120 || rc=$?
[ $rc != 124 ] || ft_fail "the job still runs 120 s after the hold"
[ $rc = 0 ] || { tail -20 "$FT_WORK/run.log"; ft_fail "the restarted job exited $rc"; }
ft_wait "$holder" 10 >/dev/null
kill -0 "$held" 2>/dev/null && ft_fail "the held worker (pid $held) is still there"
grep -q "resumed from $(ft_checkpoint "$ck" "$newest") (step $newest" "$FT_WORK/run.log" ||
  { grep resumed "$FT_WORK/run.log"; ft_fail "the restart did not resume from step $newest"; }
grep -q "final: epoch=[0-9]* step=$steps " "$FT_WORK/run.log" || ft_fail "the job did not reach step $steps"
echo "restarted: $(ft_show "resumed from [^ ]* (step [0-9]*" "$FT_WORK/run.log"); completed step $steps"
ft_check_clean
ft_check_resumes "$cfg" "$ck" "$steps"
echo PASS
