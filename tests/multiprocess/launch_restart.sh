#!/usr/bin/env bash
# `tandem launch --max-restarts 1` with a worker killed (SIGKILL) mid-run restarts the workers,
# which resume from the newest checkpoint and end with the same weights as a run nobody killed;
# with `--max-restarts 0` the same kill makes the launcher exit non-zero naming the rank.
#
#   launch_restart.sh TANDEM_BINARY SOURCE_DIR
#
# Exit 0 pass, 1 fail, 77 skipped (no Fashion-MNIST or no torch).
set -euo pipefail

tandem=$1
src=$2
data=/usr/share/datasets/fashion-mnist
[[ -e $data/train-images-idx3-ubyte.gz ]] || { echo "SKIPPED: $data not found"; exit 77; }
/usr/bin/python3 -c 'import torch' 2>/dev/null || { echo "SKIPPED: python3-torch not installed"; exit 77; }

work=$(mktemp -d /tmp/tandem-restart-XXXXXX)
trap 'pkill -KILL -f "$work" 2>/dev/null || true; rm -rf "$work"' EXIT
cfg=$src/configs/fashion_mnist_mlp.yaml
common=(strategy.name=ddp training.max_steps=300 checkpoint.every_steps=50 data.workers=1
        logging.progress=none logging.tensorboard=false training.eval_every_epoch=false
        model.hidden=[64])

fail() { echo "FAIL: $*"; exit 1; }

# A run nobody kills.
"$tandem" launch --nproc-per-node 2 "$cfg" "${common[@]}" "checkpoint.dir=$work/clean/ck" \
  "logging.dir=$work/clean/log" >"$work/clean.log" 2>&1 || { tail "$work/clean.log"; fail "clean run"; }

# Kills rank 1's worker once the run has saved its first checkpoint; prints the killed pid.
kill_rank1_after_first_checkpoint() {
  local dir=$1
  for _ in $(seq 600); do
    if compgen -G "$dir/step-*" >/dev/null; then
      local pid
      pid=$(pgrep -f -- "train .*checkpoint.dir=$dir" | while read -r p; do
              tr '\0' '\n' </proc/"$p"/environ 2>/dev/null | grep -qx RANK=1 && echo "$p"; done | head -1)
      if [[ -n $pid ]]; then kill -KILL "$pid"; echo "$pid"; return 0; fi
    fi
    sleep 0.1
  done
  return 1
}

# Killed once, one restart allowed: completes.
"$tandem" launch --nproc-per-node 2 --max-restarts 1 "$cfg" "${common[@]}" \
  "checkpoint.dir=$work/killed/ck" "logging.dir=$work/killed/log" >"$work/killed.log" 2>&1 &
agent=$!
kill_rank1_after_first_checkpoint "$work/killed/ck" >/dev/null || fail "never saw a checkpoint to kill after"
wait "$agent" || { tail -20 "$work/killed.log"; fail "the restarted job did not complete"; }
grep -q "resumed from" "$work/killed.log" || fail "the restarted workers did not resume from a checkpoint"

# Killed once, no restarts allowed: exits non-zero naming rank 1.
set +e
"$tandem" launch --nproc-per-node 2 --max-restarts 0 "$cfg" "${common[@]}" \
  "checkpoint.dir=$work/norestart/ck" "logging.dir=$work/norestart/log" >"$work/norestart.log" 2>&1 &
agent=$!
kill_rank1_after_first_checkpoint "$work/norestart/ck" >/dev/null
wait "$agent"
rc=$?
set -e
[[ $rc -ne 0 ]] || fail "--max-restarts 0 exited 0 after a worker was killed"
grep -q "rank 1" "$work/norestart.log" || { tail "$work/norestart.log"; fail "the error does not name rank 1"; }
grep "tandem launch:" "$work/norestart.log" | tail -1

/usr/bin/python3 - "$work" "$src/tests/reference" <<'PY'
import glob, sys
work, ref = sys.argv[1], sys.argv[2]
sys.path.insert(0, ref)
import safetensors_io
def final(name):
    paths = sorted(glob.glob(f"{work}/{name}/ck/step-*/model.safetensors"))
    assert paths and paths[-1].endswith("step-00000300/model.safetensors"), paths
    return safetensors_io.load(paths[-1])
a, b = final("clean"), final("killed")
same = all(a[k].numpy().tobytes() == b[k].numpy().tobytes() for k in a)
print("killed-and-restarted run equals the clean run bit for bit:", same)
sys.exit(0 if same else 1)
PY
