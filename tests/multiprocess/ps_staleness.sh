#!/usr/bin/env bash
# parameter_server async with strategy.max_staleness, across real processes: one `tandem ps` and two
# `tandem train` workers; once both train, worker 1 is frozen (SIGSTOP) for two seconds. With
# max_staleness 2 the chief must wait for it -- the server reports it served no pull more than 2
# steps ahead of the slowest worker -- and with no bound (0) the chief runs far ahead in that time,
# which shows the check can fail. Both jobs complete.
#
#   ps_staleness.sh TANDEM_BINARY SOURCE_DIR
#
# Exit 0 pass, 1 fail, 77 skipped (no Fashion-MNIST).
set -euo pipefail

tandem=$1
src=$2
data=/usr/share/datasets/fashion-mnist
[[ -e $data/train-images-idx3-ubyte.gz ]] || { echo "SKIPPED: $data not found"; exit 77; }

work=$(mktemp -d /tmp/tandem-ps-staleness-XXXXXX)
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill -CONT "$p" 2>/dev/null || true; kill -KILL "$p" 2>/dev/null || true; done
  rm -rf "$work"
}
trap cleanup EXIT
fail() { echo "FAIL: $*"; exit 1; }
cfg=$src/configs/fashion_mnist_mlp.yaml
export TANDEM_JOB_TOKEN=ps-staleness-token

# run BOUND: prints the server's "at most N step(s) ahead" N.
run() {
  local bound=$1 dir=$work/bound$1 ep=
  mkdir -p "$dir"
  local common=(strategy.name=parameter_server strategy.mode=async strategy.max_staleness=$bound
                data.workers=0 model.hidden=[64] training.max_steps=3000 training.threads=1
                training.eval_every_epoch=false checkpoint.resume=never logging.progress=plain
                logging.every_steps=20 logging.tensorboard=false
                "checkpoint.dir=$dir/ck" "logging.dir=$dir/log")
  "$tandem" ps "$cfg" --shard 0 "${common[@]}" >"$dir/ps.log" 2>&1 &
  local server=$!
  pids+=("$server")
  for _ in $(seq 300); do
    ep=$(grep -o "listening on [0-9.:]*" "$dir/ps.log" 2>/dev/null | awk '{print $3}') || true
    [[ -n $ep ]] && break
    sleep 0.1
  done
  [[ -n $ep ]] || fail "bound $bound: the server did not start: $(cat "$dir/ps.log")"
  local w=()
  for r in 0 1; do
    env RANK=$r WORLD_SIZE=2 LOCAL_RANK=$r LOCAL_WORLD_SIZE=2 MASTER_ADDR=127.0.0.1 \
      MASTER_PORT=29500 TANDEM_PS_ENDPOINTS="$ep" "$tandem" train "$cfg" "${common[@]}" \
      >"$dir/w$r.log" 2>&1 &
    w+=($!)
    pids+=($!)
  done
  # Both train once the chief has logged a step; then freeze worker 1 for two seconds.
  for _ in $(seq 600); do grep -q "step 20/" "$dir/w0.log" 2>/dev/null && break; sleep 0.05; done
  grep -q "step 20/" "$dir/w0.log" || fail "bound $bound: the chief did not train: $(tail -5 "$dir/w0.log")"
  kill -STOP "${w[1]}"
  sleep 2
  kill -CONT "${w[1]}"
  for r in 0 1; do
    wait "${w[$r]}" || fail "bound $bound: worker $r failed: $(tail -5 "$dir/w$r.log")"
  done
  wait "$server" || fail "bound $bound: the server failed: $(tail -5 "$dir/ps.log")"
  local lead
  lead=$(grep -o "ran at most [0-9]* step" "$dir/ps.log" | awk '{print $4}')
  [[ -n $lead ]] || fail "bound $bound: the server reported no lead: $(cat "$dir/ps.log")"
  echo "$lead"
}

bounded=$(run 2)
echo "max_staleness 2: the chief was served at most $bounded step(s) ahead of the frozen worker"
(( bounded <= 2 )) || fail "max_staleness 2, but a pull was served $bounded steps ahead"
(( bounded >= 1 )) || fail "the chief never got ahead of the frozen worker: the test shows nothing"
unbounded=$(run 0)
echo "no bound: the chief ran $unbounded step(s) ahead while worker 1 was frozen"
(( unbounded > 2 )) || fail "without a bound the chief got only $unbounded steps ahead: the freeze did not bite"
echo "ok"
