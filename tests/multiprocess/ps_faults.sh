#!/usr/bin/env bash
# parameter_server faults and refusals, on real processes:
#   1. bad setups end with a one-line error and exit 2: `tandem ps` without TANDEM_JOB_TOKEN, a
#      worker without TANDEM_PS_ENDPOINTS or with the wrong number of them; a worker with the
#      wrong token is refused by the server (exit 1, naming the shard);
#   2. a server killed (SIGKILL) while two sync workers train: both workers exit non-zero within
#      the deadline, naming the shard;
#   3. the same under `tandem launch --num-ps 2 --max-restarts 1`: the job completes from the
#      newest checkpoint -- which holds the servers' variables and Adam state -- with the same
#      weights, bit for bit, as a run nobody killed;
#   4. a worker killed in async mode under `--max-restarts 1`: the launcher restarts it alone (the
#      other worker and the server keep running), it rejoins, and the job completes;
#   5. the same for the chief (rank 0), which must rejoin the running servers as they are instead
#      of rewinding them to its checkpoint.
#
#   ps_faults.sh TANDEM_BINARY SOURCE_DIR
#
# Exit 0 pass, 1 fail, 77 skipped (no Fashion-MNIST or no torch).
set -euo pipefail

tandem=$1
src=$2
data=/usr/share/datasets/fashion-mnist
[[ -e $data/train-images-idx3-ubyte.gz ]] || { echo "SKIPPED: $data not found"; exit 77; }
/usr/bin/python3 -c 'import torch' 2>/dev/null || { echo "SKIPPED: python3-torch not installed"; exit 77; }

work=$(mktemp -d /tmp/tandem-ps-faults-XXXXXX)
started=()
cleanup() {
  for p in "${started[@]}"; do kill -KILL "$p" 2>/dev/null || true; done
  pkill -KILL -f -- "$work" 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT
cfg=$src/configs/fashion_mnist_mlp.yaml
common=(strategy.name=parameter_server data.workers=1 logging.progress=none
        logging.tensorboard=false training.eval_every_epoch=false model.hidden=[64])
fail() { echo "FAIL: $*"; exit 1; }

# Waits for "tandem ps: shard S listening on HOST:PORT" in a log; prints HOST:PORT.
endpoint_in() {
  for _ in $(seq 300); do
    local ep
    ep=$(grep -o "listening on [0-9.:]*" "$1" 2>/dev/null | awk '{print $3}')
    if [[ -n $ep ]]; then echo "$ep"; return 0; fi
    sleep 0.1
  done
  return 1
}

# --- 1. refusals
set +e
env -u TANDEM_JOB_TOKEN "$tandem" ps "$cfg" --shard 0 "${common[@]}" >"$work/notoken.log" 2>&1
rc=$?
set -e
[[ $rc -eq 2 ]] || fail "tandem ps without a token exited $rc, expected 2"
[[ $(wc -l <"$work/notoken.log") -eq 1 ]] && grep -q "TANDEM_JOB_TOKEN is not set" "$work/notoken.log" ||
  { cat "$work/notoken.log"; fail "tandem ps without a token: expected one line naming TANDEM_JOB_TOKEN"; }
echo "ok: tandem ps without a token: $(cat "$work/notoken.log")"

export TANDEM_JOB_TOKEN=ps-faults-token
worker_env=(RANK=0 WORLD_SIZE=1 LOCAL_RANK=0 LOCAL_WORLD_SIZE=1 MASTER_ADDR=127.0.0.1 MASTER_PORT=29500)
set +e
env "${worker_env[@]}" "$tandem" train "$cfg" "${common[@]}" >"$work/noeps.log" 2>&1
rc1=$?
env "${worker_env[@]}" TANDEM_PS_ENDPOINTS=127.0.0.1:1 "$tandem" train "$cfg" "${common[@]}" \
  strategy.num_ps=2 >"$work/fewer.log" 2>&1
rc2=$?
set -e
[[ $rc1 -eq 2 ]] && grep -q "TANDEM_PS_ENDPOINTS" "$work/noeps.log" ||
  { cat "$work/noeps.log"; fail "a worker without TANDEM_PS_ENDPOINTS: exit $rc1"; }
[[ $rc2 -eq 2 ]] && grep -q "lists 1 servers but strategy.num_ps is 2" "$work/fewer.log" ||
  { cat "$work/fewer.log"; fail "a worker with 1 endpoint for 2 shards: exit $rc2"; }
echo "ok: $(cat "$work/fewer.log")"

"$tandem" ps "$cfg" --shard 0 "${common[@]}" >"$work/tok_ps.log" 2>&1 &
started+=($!)
ep=$(endpoint_in "$work/tok_ps.log") || fail "the server did not start"
set +e
env "${worker_env[@]}" TANDEM_JOB_TOKEN=wrong TANDEM_PS_ENDPOINTS=$ep "$tandem" train "$cfg" \
  "${common[@]}" strategy.timeout_s=10 "checkpoint.dir=$work/tok/ck" "logging.dir=$work/tok/log" \
  >"$work/tok.log" 2>&1
rc=$?
set -e
[[ $rc -eq 1 ]] && grep -q "parameter server shard 0 ($ep): register worker 0 refused: UNAUTHENTICATED: wrong job token" "$work/tok.log" ||
  { cat "$work/tok.log"; fail "a worker with the wrong token: exit $rc"; }
echo "ok: wrong token refused: $(grep -o 'refused: UNAUTHENTICATED[^(]*' "$work/tok.log")"
kill -TERM "${started[-1]}"; wait "${started[-1]}" || fail "tandem ps did not exit 0 on SIGTERM"

# --- 2. a server killed under two sync workers: they fail within the deadline, naming shard 1.
timeout_s=20
for s in 0 1; do
  "$tandem" ps "$cfg" --shard "$s" "${common[@]}" strategy.num_ps=2 >"$work/kill_ps$s.log" 2>&1 &
  started+=($!)
done
ps1_pid=${started[-1]}
eps="$(endpoint_in "$work/kill_ps0.log"),$(endpoint_in "$work/kill_ps1.log")"
pids=()
for r in 0 1; do
  env RANK=$r WORLD_SIZE=2 LOCAL_RANK=$r LOCAL_WORLD_SIZE=2 MASTER_ADDR=127.0.0.1 MASTER_PORT=29500 \
    TANDEM_PS_ENDPOINTS="$eps" "$tandem" train "$cfg" "${common[@]}" strategy.num_ps=2 \
    strategy.timeout_s=$timeout_s training.max_steps=100000 logging.every_steps=10 \
    logging.progress=plain "checkpoint.dir=$work/kill/ck" "logging.dir=$work/kill/log" \
    >"$work/kill_w$r.log" 2>&1 &
  pids+=($!)
done
for _ in $(seq 600); do grep -q "step" "$work/kill_w0.log" && break; sleep 0.1; done
kill -KILL "$ps1_pid"
t0=$(date +%s%N)
for r in 0 1; do
  set +e
  wait "${pids[$r]}"
  rc=$?
  set -e
  [[ $rc -ne 0 ]] || fail "worker $r exited 0 after shard 1 was killed"
  grep -q "parameter server shard 1 (" "$work/kill_w$r.log" ||
    { tail -5 "$work/kill_w$r.log"; fail "worker $r's error does not name shard 1"; }
done
elapsed_ms=$(( ($(date +%s%N) - t0) / 1000000 ))
echo "ok: both workers failed ${elapsed_ms} ms after shard 1 died (deadline ${timeout_s} s): $(grep -h 'error' "$work/kill_w0.log" | head -1)"
(( elapsed_ms < timeout_s * 1000 )) || fail "the workers took ${elapsed_ms} ms, over the ${timeout_s} s deadline"

# --- 3. the same under tandem launch --max-restarts 1: completes from the checkpoint, same weights.
launch_common=("${common[@]}" training.max_steps=200 checkpoint.every_steps=50 strategy.timeout_s=60)
"$tandem" launch --nproc-per-node 2 --num-ps 2 "$cfg" "${launch_common[@]}" \
  "checkpoint.dir=$work/clean/ck" "logging.dir=$work/clean/log" >"$work/clean.log" 2>&1 ||
  { tail "$work/clean.log"; fail "clean run"; }
"$tandem" launch --nproc-per-node 2 --num-ps 2 --max-restarts 1 --stop-grace 5 "$cfg" \
  "${launch_common[@]}" "checkpoint.dir=$work/restart/ck" "logging.dir=$work/restart/log" \
  >"$work/restart.log" 2>&1 &
agent=$!
killed=
for _ in $(seq 1200); do
  if compgen -G "$work/restart/ck/step-*" >/dev/null; then
    killed=$(pgrep -f -- "ps .*checkpoint.dir=$work/restart/ck.*--shard 1" | head -1)
    [[ -n $killed ]] && kill -KILL "$killed" && break
  fi
  sleep 0.1
done
[[ -n $killed ]] || fail "never saw a checkpoint to kill shard 1 after"
wait "$agent" || { tail -20 "$work/restart.log"; fail "the restarted job did not complete"; }
grep -q "parameter server shard 1 exited with status 137 (killed by SIGKILL)" "$work/restart.log" ||
  { tail "$work/restart.log"; fail "the launcher did not name shard 1"; }
grep -q "resumed from" "$work/restart.log" || fail "the restarted workers did not resume from a checkpoint"
echo "ok: $(grep 'tandem launch:.*restarting' "$work/restart.log")"

# async_kill RANK NAME: an async job under --max-restarts 1 whose worker RANK is killed (SIGKILL)
# after the first checkpoint; waits for the job, which must complete, restarting that worker alone
# and leaving the server running. The log is $work/NAME.log.
async_kill() {
  local rank=$1 name=$2 agent killed=
  "$tandem" launch --nproc-per-node 2 --num-ps 1 --max-restarts 1 --stop-grace 5 "$cfg" \
    "${launch_common[@]}" strategy.mode=async "checkpoint.dir=$work/$name/ck" \
    "logging.dir=$work/$name/log" >"$work/$name.log" 2>&1 &
  agent=$!
  for _ in $(seq 1200); do
    if compgen -G "$work/$name/ck/step-*" >/dev/null; then
      killed=$(pgrep -f -- "train .*checkpoint.dir=$work/$name/ck" | while read -r p; do
                 tr '\0' '\n' </proc/"$p"/environ 2>/dev/null | grep -qx "RANK=$rank" && echo "$p"; done | head -1 || true)
      [[ -n $killed ]] && kill -KILL "$killed" && break
    fi
    sleep 0.1
  done
  [[ -n $killed ]] || fail "never saw a checkpoint to kill worker $rank after"
  wait "$agent" || { tail -20 "$work/$name.log"; fail "the async job did not complete after worker $rank died"; }
  grep -q "final:" "$work/$name.log" || fail "the async job printed no final line"
  grep -q "worker rank $rank exited with status 137 (killed by SIGKILL); restarting it alone" "$work/$name.log" ||
    { grep "tandem launch:" "$work/$name.log"; fail "the launcher did not restart worker $rank alone"; }
  ! grep -q "restarting all" "$work/$name.log" || fail "the launcher restarted every worker in async mode"
  [[ $(grep -c "listening on" "$work/$name.log") -eq 1 ]] || fail "the server was restarted"
}

# --- 4. a worker killed in async mode: the job completes.
async_kill 1 async
echo "ok: async job completed after worker 1 was killed: $(grep -h 'final:' "$work/async.log")"

# --- 5. the chief (rank 0) killed in async mode: it rejoins the running servers without rewinding
# them to its checkpoint (the other worker's updates since then are kept), and the job completes.
async_kill 0 async0
grep -q "rank 0 rejoins without restoring its checkpoint" "$work/async0.log" ||
  { tail -20 "$work/async0.log"; fail "the restarted chief rewound the servers to its checkpoint"; }
echo "ok: async job completed after the chief was killed; it rejoined the servers as they were"

/usr/bin/python3 - "$work" "$src/tests/reference" <<'PY'
import glob, sys
work, ref = sys.argv[1], sys.argv[2]
sys.path.insert(0, ref)
import safetensors_io
def final(name, what):
    paths = sorted(glob.glob(f"{work}/{name}/ck/step-*/{what}.safetensors"))
    assert paths and paths[-1].endswith(f"step-00000200/{what}.safetensors"), paths
    return safetensors_io.load(paths[-1])
same = True
for what in ("model", "optimizer"):
    a, b = final("clean", what), final("restart", what)
    same &= a.keys() == b.keys() and all(a[k].numpy().tobytes() == b[k].numpy().tobytes() for k in a)
print("restarted after a server was killed == clean run, bit for bit (weights and Adam state):", same)
sys.exit(0 if same else 1)
PY
