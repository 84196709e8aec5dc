#!/usr/bin/env bash
# /dev/shm full, 2 DDP ranks over shared memory under `tandem launch --max-restarts 0`, in a mount
# namespace of the test's own whose /dev/shm is a 256 KiB tmpfs, filled by a segment a killed job
# of another agent left behind (/dev/shm/tandem-0123456789ab-...). The rank that creates the
# job's segment must fail with one line that says /dev/shm is full and what fills it (the bytes
# other tandem jobs left); the job must end (exit 1) naming the rank, without a process left, and
# nothing under the job's own prefix may be left in /dev/shm. The other job's segment is not the
# job's to remove, and must still be there. The other rank waits for the segment's name in the
# store and does not take SIGTERM during that setup (main.cc: it finishes setting up first), so it
# ends when the stop grace (3 s here) does, by SIGKILL.
#
#   shm_full.sh TANDEM_BINARY SOURCE_DIR [inside]
set -uo pipefail
tandem=$1 src=$2
source "$src/tests/faults/lib.sh"
if [ "${3:-}" != inside ]; then
  [ "$(id -u)" = 0 ] || ft_skip "a private /dev/shm (a mount namespace) needs root"
  command -v unshare >/dev/null || ft_skip "unshare not found (util-linux)"
  exec unshare --mount --propagation private -- bash "$0" "$tandem" "$src" inside
fi
mount -t tmpfs -o size=256k tandem-faults-shm /dev/shm || ft_skip "cannot mount a tmpfs over /dev/shm"
ft_setup shm-full
cfg=$FT_WORK/exp.yaml
leftover=/dev/shm/tandem-0123456789ab-00000000deadbeef
dd if=/dev/zero of="$leftover" bs=4k 2>/dev/null  # until /dev/shm is full
echo "/dev/shm: $(df -k --output=size,avail /dev/shm | tail -1 | awk '{print $1 " KiB, " $2 " KiB free"}'), $(stat -c %s "$leftover") bytes in ${leftover##*/}"
ft_experiment "$cfg" "strategy: {name: ddp, backend: shm, timeout_s: 30}" \
  "checkpoint: {dir: '$FT_WORK/ck', every_steps: 100, resume: auto}"

ft_bg "$FT_WORK/run.log" "$tandem" launch --nproc-per-node 2 --max-restarts 0 --stop-grace 3 "$cfg"
agent=$FT_PID
ft_until 10 ft_watch_shm || ft_fail "no worker with a TANDEM_SHM_PREFIX seen"
rc=0
ft_wait "$agent" 60 || rc=$?
[ $rc != 124 ] || ft_fail "the job still runs 60 s after it started"
echo "the job ended $SECONDS s after the test started"
[ $rc = 1 ] || { tail "$FT_WORK/run.log"; ft_fail "tandem launch exited $rc, expected 1"; }
err=$(grep "tandem: error:" "$FT_WORK/run.log")
echo "$err"
grep -q "/dev/shm" <<<"$err" || ft_fail "the error does not name /dev/shm"
grep -q "of other tandem jobs (/dev/shm/tandem-\*)" <<<"$err" ||
  ft_fail "the error does not say what fills /dev/shm"
ft_show "tandem launch: worker rank [01] exited with status 1.*" "$FT_WORK/run.log" ||
  ft_fail "the agent did not name the failed rank"
[ -e "$leftover" ] || ft_fail "the other job's segment was removed"
ft_check_clean
echo PASS
