#!/usr/bin/env bash
# parameter_server in sync mode -- 2 workers and 2 servers under `tandem launch --num-ps 2` --
# ends with the same weights and optimizer state as one process (max |difference| <= 1e-5), and
# with messages far smaller than a shard, the same bits as with whole messages:
# the mlp on Fashion-MNIST for 20 Adam steps. The checkpoint of the parameter_server run is the
# servers' state (fetched by the chief), so this also checks that a checkpoint holds the servers'
# variables and optimizer state. Compares with PyTorch's reader (tests/reference/safetensors_io.py).
#
#   ps_sync_equivalence.sh TANDEM_BINARY SOURCE_DIR
#
# Exit 0 pass, 1 fail, 77 skipped (no Fashion-MNIST or no torch).
set -euo pipefail

tandem=$1
src=$2
data=/usr/share/datasets/fashion-mnist
[[ -e $data/train-images-idx3-ubyte.gz ]] || { echo "SKIPPED: $data not found"; exit 77; }
/usr/bin/python3 -c 'import torch' 2>/dev/null || { echo "SKIPPED: python3-torch not installed"; exit 77; }

work=$(mktemp -d /tmp/tandem-ps-sync-XXXXXX)
trap 'rm -rf "$work"' EXIT
# lr 2e-4 as in ddp_equivalence.sh: at Adam's 1e-3 the first steps amplify the last-bit
# differences of a 2-way gradient average beyond 1e-5 (ddp differs from one process as much).
common=(training.max_steps=20 data.batch_size=32 data.workers=1 optimizer.lr=2e-4
        checkpoint.resume=never logging.progress=none logging.tensorboard=false
        training.eval_every_epoch=false)
cfg=$src/configs/fashion_mnist_mlp.yaml

run() {  # NAME COMMAND...
  local name=$1
  shift
  if ! "$@" "checkpoint.dir=$work/$name/ck" "logging.dir=$work/$name/log" >"$work/$name.log" 2>&1; then
    echo "FAIL: $name exited non-zero:"
    tail -20 "$work/$name.log"
    exit 1
  fi
  grep -h "final:\|parameter_server:" "$work/$name.log" | sed "s/^/$name: /"
}

run single "$tandem" train "$cfg" "${common[@]}" training.threads=1
run ps_sync "$tandem" launch --nproc-per-node 2 --num-ps 2 "$cfg" "${common[@]}" \
  strategy.name=parameter_server strategy.mode=sync
# The same with 48 KiB messages: every shard (~1 MB with Adam's state) is pulled, pushed, saved and
# restored as a stream of pieces (ps.proto), and must give the same bits as whole messages.
run ps_streamed "$tandem" launch --nproc-per-node 2 --num-ps 2 "$cfg" "${common[@]}" \
  strategy.name=parameter_server strategy.mode=sync strategy.max_message_mb=0.046875
grep -q "\[ps 1\] tandem ps: shard 1 listening on 127.0.0.1:" "$work/ps_sync.log" ||
  { echo "FAIL: shard 1 did not report its address"; exit 1; }
grep -q "\[ps 0\] tandem ps: shard 0 stopping: every worker finished" "$work/ps_sync.log" ||
  { echo "FAIL: shard 0 did not stop when the workers finished"; exit 1; }

/usr/bin/python3 - "$work" "$src/tests/reference" <<'PY'
import glob, sys
import torch
work, ref = sys.argv[1], sys.argv[2]
sys.path.insert(0, ref)
import safetensors_io

def load(name, what):
    paths = sorted(glob.glob(f"{work}/{name}/ck/step-*/{what}.safetensors"))
    assert paths and paths[-1].endswith(f"step-00000020/{what}.safetensors"), paths
    return safetensors_io.load(paths[-1])

failed = False
for what in ("model", "optimizer"):
    base, other = load("single", what), load("ps_sync", what)
    assert other.keys() == base.keys(), f"{what}: different tensors: {sorted(set(other) ^ set(base))}"
    worst = max(float((other[k].double() - base[k].double()).abs().max()) for k in base)
    ok = worst <= 1e-5
    failed |= not ok
    print(f"ps_sync {what}: max |x - x_single| = {worst:.3e} {'ok' if ok else 'FAIL (> 1e-5)'}")
    streamed = load("ps_streamed", what)
    same = streamed.keys() == other.keys() and all(torch.equal(streamed[k], other[k]) for k in other)
    failed |= not same
    print(f"ps_streamed {what}: {'bit-identical to ps_sync' if same else 'FAIL: differs from ps_sync'}")
sys.exit(1 if failed else 0)
PY
