#!/usr/bin/env bash
# The checkpoint directory's disk fills up (a 1 MiB tmpfs, filled by another file once the first
# checkpoints are written), 2 DDP ranks under `tandem launch --max-restarts 0`: the chief's next
# save must fail with one line naming the file and "No space left on device", leave no
# half-written directory (no .tmp-*, no new step-*), keep every earlier checkpoint intact, and the
# job must end (exit 1, naming rank 0) without a process or segment left. Once space is freed, the
# same command resumes from the newest checkpoint.
#
# The tmpfs is mounted in a mount namespace of the test's own, so no other test's namespace (nor an
# emulated cluster's bind of /tmp) ever holds a copy of it.
#
#   disk_full.sh TANDEM_BINARY SOURCE_DIR [inside]
set -uo pipefail
tandem=$1 src=$2
source "$src/tests/faults/lib.sh"
if [ "${3:-}" != inside ]; then
  [ "$(id -u)" = 0 ] || ft_skip "mounting a small tmpfs (in a mount namespace) needs root"
  command -v unshare >/dev/null || ft_skip "unshare not found (util-linux)"
  exec unshare --mount --propagation private -- bash "$0" "$tandem" "$src" inside
fi
ft_setup disk-full
cfg=$FT_WORK/exp.yaml
ck=$FT_WORK/ck
mkdir -p "$ck"
mount -t tmpfs -o size=1m tandem-faults-ck "$ck" || ft_skip "cannot mount a tmpfs here"
FT_MOUNTS+=("$ck")
ft_experiment "$cfg" "strategy: {name: ddp, timeout_s: 60}" \
  "checkpoint: {dir: '$ck', every_steps: 100, keep: 3, resume: auto}"

ft_bg "$FT_WORK/run.log" "$tandem" launch --nproc-per-node 2 --max-restarts 0 "$cfg" \
  training.max_steps=1000000
agent=$FT_PID
ft_until 60 ft_has_checkpoint "$ck" || { cat "$FT_WORK/run.log"; ft_fail "no first checkpoint"; }
ft_watch_shm
dd if=/dev/zero of="$ck/filler" bs=64k 2>/dev/null  # until the disk is full
echo "$ck is full: $(df -k --output=avail "$ck" | tail -1 | tr -d ' ') KiB left"
rc=0
ft_wait "$agent" 60 || rc=$?
[ $rc != 124 ] || ft_fail "the job still runs 60 s after the disk filled up"
[ $rc = 1 ] || { tail "$FT_WORK/run.log"; ft_fail "tandem launch exited $rc, expected 1"; }
err=$(grep "\[rank 0\] tandem: error:" "$FT_WORK/run.log")
echo "$err"
[ "$(grep -c . <<<"$err")" = 1 ] || ft_fail "expected one error line from the chief"
grep -q "$ck/.*No space left on device" <<<"$err" || ft_fail "the error does not name the file and the full disk"
ft_show "tandem launch: worker rank 0 exited with status 1.*" "$FT_WORK/run.log" ||
  ft_fail "the agent did not name rank 0"
left=$(ls -a "$ck" | grep '^\.tmp-' || true)
[ -z "$left" ] || ft_fail "half-written directories left in $ck: $left"
newest=$(ft_newest_step "$ck")
echo "left in $ck: $(ls "$ck" | paste -sd' ')"
ft_check_clean
rm -f "$ck/filler"
# Every checkpoint left loads (the newest is resumed below; the others are checked the same way).
for d in "$ck"/step-*; do
  step=$((10#${d##*step-}))
  [ "$step" = "$newest" ] && continue
  timeout 60 "$tandem" train "$cfg" checkpoint.resume="$d" training.max_steps=$((step + 1)) \
    checkpoint.dir="$FT_WORK/scratch" >"$FT_WORK/older.log" 2>&1 ||
    { tail -3 "$FT_WORK/older.log"; ft_fail "$d does not load"; }
done
ft_check_resumes "$cfg" "$ck" "$newest"
echo PASS
