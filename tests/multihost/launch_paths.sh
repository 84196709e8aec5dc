#!/usr/bin/env bash
# Every way of starting a job across hosts, on emulated hosts (tests/multihost/cluster.sh): the MLP
# on Fashion-MNIST for a few steps in fp64, where ddp must end within 1e-9 of one process (in
# practice ~1e-16: the same math summed in another order), for
#   - `tandem launch --nnodes H --node-rank i --rdzv-endpoint h0-address:PORT` on every host, with
#     1 and 2 ranks per host on 2 and 4 hosts (1 rank per host: flat Gloo; 2: hierarchical);
#   - mpirun over the hosts (-H h0:P,h1:P,... through an rsh agent), 1 and 2 ranks per host (MPI;
#     2 per host: hierarchical over MPI), also on hosts whose names do not resolve;
# and checks that the agents say which backend they chose, that f32 hierarchical runs are close to
# flat Gloo (printed), and that under mpirun a store that cannot be hosted (MASTER_ADDR naming
# another host) makes every rank exit at once with rank 0's error instead of hanging.
#
#   launch_paths.sh TANDEM_BINARY SOURCE_DIR BUILD_DIR
set -uo pipefail
tandem=$1 src=$2 build=$3
source "$src/tests/multihost/lib.sh"
data=/usr/share/datasets/fashion-mnist
[[ -e $data/train-images-idx3-ubyte.gz ]] || mh_skip "$data not found"
/usr/bin/python3 -c 'import torch' 2>/dev/null || mh_skip "python3-torch not installed"
command -v mpirun >/dev/null || mh_skip "mpirun not found"
mh_setup paths 1 4
cfg=$src/configs/fashion_mnist_mlp.yaml
common=(training.max_steps=8 data.batch_size=64 data.workers=1 model.hidden=[64]
        training.precision=fp64 checkpoint.resume=never logging.progress=none
        logging.tensorboard=false training.eval_every_epoch=false)
h0=$(mh_addr h0)
port=29400

# The reference: one process.
"$tandem" train "$cfg" "${common[@]}" checkpoint.dir="$MH_WORK/single/ck" \
  logging.dir="$MH_WORK/single/log" >"$MH_WORK/single.log" 2>&1 ||
  { tail "$MH_WORK/single.log"; mh_fail "the one-process reference failed"; }

check() {  # NAME BOUND: the run's newest checkpoint against the reference
  local d
  d=$(mh_distance "$MH_WORK/$1/ck" "$MH_WORK/single/ck") || mh_fail "$1: no checkpoint to compare"
  echo "$1: max |w - w_single| = $d"
  /usr/bin/python3 -c "import sys; sys.exit(0 if float('$d') <= $2 else 1)" ||
    mh_fail "$1 differs from one process by $d (bound $2)"
}

launch() {  # NAME HOSTS PER_HOST [OVERRIDES...]: tandem launch on each host
  local name=$1 hosts=$2 per=$3 i pids=()
  shift 3
  port=$((port + 1))
  for ((i = 0; i < hosts; i++)); do
    mh_bg "$MH_WORK/$name.h$i.log" "h$i" env TANDEM_JOB_TOKEN=mh-launch-paths-token \
      "$tandem" launch --nnodes "$hosts" --node-rank "$i" --rdzv-endpoint "$h0:$port" \
      --nproc-per-node "$per" --rdzv-timeout 60 "$cfg" "${common[@]}" strategy.name=ddp \
      checkpoint.dir="$MH_WORK/$name/ck" logging.dir="$MH_WORK/$name/log" "$@"
    pids+=("$MH_PID")
  done
  for ((i = 0; i < hosts; i++)); do
    mh_wait "${pids[$i]}" 180 || { tail -20 "$MH_WORK/$name.h$i.log"; mh_fail "$name: host h$i exited non-zero"; }
  done
}

mpi() {  # NAME HOSTLIST NP [OVERRIDES...]: mpirun on h0 over the hosts
  local name=$1 hostlist=$2 np=$3
  shift 3
  mh_bg "$MH_WORK/$name.log" h0 "${MH_MPIRUN[@]}" -H "$hostlist" -np "$np" "$tandem" train \
    "$cfg" "${common[@]}" strategy.name=ddp checkpoint.dir="$MH_WORK/$name/ck" \
    logging.dir="$MH_WORK/$name/log" "$@"
  mh_wait "$MH_PID" 180 || { tail -20 "$MH_WORK/$name.log"; mh_fail "$name: mpirun exited non-zero"; }
}

launch launch_2x1 2 1
launch launch_2x2 2 2
grep -q "hierarchical all-reduce: 2 hosts x 2 ranks" "$MH_WORK/launch_2x2.h0.log" ||
  mh_fail "launch_2x2 did not pick the hierarchical all-reduce"
launch launch_4x1 4 1
launch launch_4x2 4 2
grep -q "hierarchical all-reduce: 4 hosts x 2 ranks" "$MH_WORK/launch_4x2.h0.log" ||
  mh_fail "launch_4x2 did not pick the hierarchical all-reduce"
mpi mpirun_2x1 h0:1,h1:1 2
mpi mpirun_2x2 h0:2,h1:2 4
grep -q "hierarchical all-reduce: 2 hosts x 2 ranks (shared memory inside a host, MPI" \
  "$MH_WORK/mpirun_2x2.log" || mh_fail "mpirun_2x2 did not pick the hierarchical all-reduce"
mpi mpirun_4x2 h0:2,h1:2,h2:2,h3:2 8
for run in launch_2x1 launch_2x2 launch_4x1 launch_4x2 mpirun_2x1 mpirun_2x2 mpirun_4x2; do
  check "$run" 1e-9
done

# f32: hierarchical and flat Gloo on the same 2 x 2 ranks sum in different orders.
common=("${common[@]/training.precision=fp64/training.precision=fp32}")
launch f32_hier 2 2
launch f32_flat 2 2 strategy.backend=gloo
d=$(mh_distance "$MH_WORK/f32_hier/ck" "$MH_WORK/f32_flat/ck")
echo "f32 (not asserted): hierarchical vs flat Gloo on 2 x 2: max |w - w'| = $d"
grep -q "hierarchical" "$MH_WORK/f32_flat.h0.log" && mh_fail "strategy.backend=gloo still went hierarchical"

# A rank 0 that cannot host the store (MASTER_ADDR names h1): every rank fails with its reason.
mh_bg "$MH_WORK/badaddr.log" h0 "${MH_MPIRUN[@]}" -x MASTER_ADDR="$(mh_addr h1)" -H h0:1,h1:1 \
  -np 2 "$tandem" train "$cfg" "${common[@]}" strategy.name=ddp \
  checkpoint.dir="$MH_WORK/badaddr/ck" logging.dir="$MH_WORK/badaddr/log"
rc=0
mh_wait "$MH_PID" 60 || rc=$?
[ "$rc" = 124 ] && mh_fail "a rendezvous that cannot start hung instead of failing"
[ "$rc" != 0 ] || mh_fail "a rendezvous that cannot start exited 0"
n=$(grep -c "rank 0 could not host the store: '$(mh_addr h1)' resolves to" "$MH_WORK/badaddr.log")
[ "$n" = 2 ] || { cat "$MH_WORK/badaddr.log"; mh_fail "expected both ranks to report rank 0's error, got $n"; }
echo "bad MASTER_ADDR: both ranks exited with rank 0's error"

# Hosts whose names resolve nowhere (no /etc/hosts entries, no DNS): mpirun still works.
"$MH_CLUSTER_SH" down
TANDEM_CLUSTER_NAMES=0 "$MH_CLUSTER_SH" up 2 || mh_fail "could not re-create the hosts"
mh_on h0 getent hosts h1 >/dev/null && mh_fail "h1 still resolves"
common=("${common[@]/training.precision=fp32/training.precision=fp64}")
mpi mpirun_noresolve h0:2,h1:2 4
check mpirun_noresolve 1e-9
echo "PASS"
