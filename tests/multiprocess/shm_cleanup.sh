#!/usr/bin/env bash
# No /dev/shm segment outlives its job: rank 0 of a 2-rank shm job is killed (SIGKILL, then in a
# second job SIGTERM) while it waits in the shm setup barrier -- it has created the segment, rank 1
# (paused by collectives_check --pause-before-shm) has not mapped it, so its name is still in
# /dev/shm -- and once `tandem launch` ends, no segment with the job's prefix may be left.
#
#   shm_cleanup.sh TANDEM_BINARY COLLECTIVES_CHECK
set -uo pipefail
tandem=$1 check=$2
work=$(mktemp -d /tmp/tandem-shm-XXXXXX)
trap 'pkill -KILL -f "$work" 2>/dev/null; rm -rf "$work"' EXIT
fail() { echo "FAIL: $*"; tail -20 "$work/run.log"; exit 1; }

ln -s "$check" "$work/collectives_check"  # so that pgrep finds this job's workers by $work

# The pid of the worker with RANK=$1.
worker_pid() {
  pgrep -f -- "$work/collectives_check --backend shm" | while read -r p; do
    tr '\0' '\n' </proc/"$p"/environ 2>/dev/null | grep -qx "RANK=$1" && echo "$p"; done | head -1
}

for sig in KILL TERM; do
  "$tandem" launch --nproc-per-node 2 --max-restarts 0 --stop-grace 5 --exec -- \
    "$work/collectives_check" --backend shm --pause-before-shm 1:60000 >"$work/run.log" 2>&1 &
  agent=$!
  pid=""
  for _ in $(seq 200); do
    pid=$(worker_pid 0)
    [ -n "$pid" ] && break
    sleep 0.05
  done
  [ -n "$pid" ] || fail "rank 0 never started"
  prefix=$(tr '\0' '\n' </proc/"$pid"/environ | sed -n 's/^TANDEM_SHM_PREFIX=//p')
  [ -n "$prefix" ] || prefix=tandem-  # an agent that names no prefix: any tandem segment
  segment=""
  for _ in $(seq 300); do  # rank 0 creates the segment once Gloo is up
    segment=$(ls /dev/shm 2>/dev/null | grep "^$prefix" | head -1)
    [ -n "$segment" ] && break
    sleep 0.05
  done
  [ -n "$segment" ] || fail "rank 0 created no segment /dev/shm/$prefix*"
  echo "SIG$sig to rank 0 (pid $pid) while /dev/shm/$segment waits for rank 1"
  kill -"$sig" "$pid"
  t0=$SECONDS
  while kill -0 $agent 2>/dev/null && ((SECONDS - t0 < 30)); do sleep 0.1; done
  kill -0 $agent 2>/dev/null && fail "the job still runs 30 s after SIG$sig to rank 0"
  wait $agent
  left=$(ls /dev/shm 2>/dev/null | grep "^$prefix")
  [ -z "$left" ] || fail "left in /dev/shm after SIG$sig: $left"
  grep -q "removed 1 shared-memory segment(s) .* left in /dev/shm/$prefix\* by this round's workers" \
    "$work/run.log" || fail "the agent did not say it removed the segment"
  echo "after SIG$sig: nothing with prefix $prefix left in /dev/shm"
done
echo PASS
