#!/usr/bin/env bash
# The same experiment -- lenet on Fashion-MNIST, dropout included, 20 Adam steps, f32 -- trained by
# two DDP processes under `tandem launch` (all-reduce through shared memory without and with the
# sharded optimizer update, which is the default there; Gloo) and under `mpirun` (MPI) must end
# with the very same weights, bit for bit, as the mirrored strategy with two replicas (the same
# per-replica sums, added in the same order); the sharded run must also save the very same
# optimizer state as the unsharded one (gathered before the checkpoint). The distance to one
# process is printed: in f32 it is rounding, amplified by Adam (see ddp_matrix.sh, which bounds it
# in fp64). Compares the checkpoints' safetensors files with tests/reference/safetensors_io.py.
#
#   ddp_equivalence.sh TANDEM_BINARY SOURCE_DIR
#
# Exit 0 pass, 1 fail, 77 skipped (no Fashion-MNIST, no mpirun or no torch).
set -euo pipefail

tandem=$1
src=$2
data=/usr/share/datasets/fashion-mnist
[[ -e $data/train-images-idx3-ubyte.gz ]] || { echo "SKIPPED: $data not found"; exit 77; }
command -v mpirun >/dev/null || { echo "SKIPPED: mpirun not found (openmpi-bin)"; exit 77; }
/usr/bin/python3 -c 'import torch' 2>/dev/null || { echo "SKIPPED: python3-torch not installed"; exit 77; }

work=$(mktemp -d /tmp/tandem-ddp-XXXXXX)
trap 'rm -rf "$work"' EXIT
common=(training.max_steps=20 data.batch_size=32 data.workers=1 optimizer.lr=2e-4
        checkpoint.resume=never logging.progress=none logging.tensorboard=false
        training.eval_every_epoch=false)
cfg=$src/configs/fashion_mnist_cnn.yaml

run() {  # NAME COMMAND...
  local name=$1
  shift
  if ! "$@" "checkpoint.dir=$work/$name/ck" "logging.dir=$work/$name/log" >"$work/$name.log" 2>&1; then
    echo "FAIL: $name exited non-zero:"
    tail -20 "$work/$name.log"
    exit 1
  fi
  grep -h "final:" "$work/$name.log" | sed "s/^/$name: /"
}

export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
run single "$tandem" train "$cfg" "${common[@]}" training.threads=1
run launch_shm "$tandem" launch --nproc-per-node 2 "$cfg" "${common[@]}" strategy.name=ddp \
  strategy.shard_optimizer=false
run launch_gloo "$tandem" launch --nproc-per-node 2 "$cfg" "${common[@]}" strategy.name=ddp \
  strategy.backend=gloo
run launch_sharded "$tandem" launch --nproc-per-node 2 "$cfg" "${common[@]}" strategy.name=ddp  # auto: sharded
run mpirun_mpi mpirun --oversubscribe --bind-to none -np 2 "$tandem" train "$cfg" "${common[@]}" \
  strategy.name=ddp training.threads=1
run mirrored "$tandem" train "$cfg" "${common[@]}" strategy.name=mirrored strategy.replicas=2

/usr/bin/python3 - "$work" "$src/tests/reference" <<'PY'
import glob, sys
work, ref = sys.argv[1], sys.argv[2]
sys.path.insert(0, ref)
import safetensors_io

def weights(name, file="model.safetensors"):
    paths = sorted(glob.glob(f"{work}/{name}/ck/step-*/{file}"))
    assert paths, f"{name}: no checkpoint written"
    return safetensors_io.load(paths[-1])

def distance(a, b):
    assert a.keys() == b.keys(), "different tensors"
    return max(float((a[k].double() - b[k].double()).abs().max()) for k in a
               if a[k].is_floating_point())

single, mirrored = weights("single"), weights("mirrored")
failed = False
for name in ("launch_shm", "launch_gloo", "launch_sharded", "mpirun_mpi"):
    worst = distance(weights(name), mirrored)
    failed |= worst != 0
    print(f"{name} vs mirrored: {'bit-identical' if worst == 0 else f'FAIL (differs by {worst:.3e})'}")
print(f"  (f32, not asserted) mirrored: max |w - w_single| = {distance(mirrored, single):.3e}")
for file in ("model.safetensors", "optimizer.safetensors"):
    a, b = weights("launch_sharded", file), weights("launch_shm", file)
    same = a.keys() == b.keys() and all(bool((a[k] == b[k]).all()) for k in a)
    failed |= not same
    print(f"launch_sharded vs launch_shm {file}: {'bit-identical' if same else 'FAIL (differs)'}")
sys.exit(1 if failed else 0)
PY
