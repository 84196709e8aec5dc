#!/usr/bin/env bash
# The same experiment trained by one process and by two DDP processes -- under `tandem launch`
# (all-reduce through shared memory, the default on one host; Gloo; shared memory with the sharded
# optimizer update) and under `mpirun` (MPI) -- and by the mirrored strategy with two replicas must
# end with the same weights (max |difference| <= 1e-5 over every parameter), dropout included:
# lenet on Fashion-MNIST for 20 Adam steps. The sharded run must also save the very same optimizer
# state as the unsharded one (gathered before the checkpoint). Compares the checkpoints'
# safetensors files with PyTorch's reader in tests/reference/safetensors_io.py.
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
run launch_shm "$tandem" launch --nproc-per-node 2 "$cfg" "${common[@]}" strategy.name=ddp
run launch_gloo "$tandem" launch --nproc-per-node 2 "$cfg" "${common[@]}" strategy.name=ddp \
  strategy.backend=gloo
run launch_sharded "$tandem" launch --nproc-per-node 2 "$cfg" "${common[@]}" strategy.name=ddp \
  strategy.shard_optimizer=true
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

base = weights("single")
failed = False
for name in ("launch_shm", "launch_gloo", "launch_sharded", "mpirun_mpi", "mirrored"):
    other = weights(name)
    assert other.keys() == base.keys(), f"{name}: different tensors"
    worst = max(float((other[k].double() - base[k].double()).abs().max()) for k in base
                if base[k].is_floating_point())
    ok = worst <= 1e-5
    failed |= not ok
    print(f"{name}: max |w - w_single| = {worst:.3e} {'ok' if ok else 'FAIL (> 1e-5)'}")
for file in ("model.safetensors", "optimizer.safetensors"):
    a, b = weights("launch_sharded", file), weights("launch_shm", file)
    same = a.keys() == b.keys() and all(bool((a[k] == b[k]).all()) for k in a)
    failed |= not same
    print(f"launch_sharded vs launch_shm {file}: {'bit-identical' if same else 'FAIL (differs)'}")
sys.exit(1 if failed else 0)
PY
