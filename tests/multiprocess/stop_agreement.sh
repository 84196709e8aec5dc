#!/usr/bin/env bash
# SIGTERM reaching one DDP rank only (a preempted node, a `kill` of one process): every rank must
# stop at the same step -- the stop travels with the step's loss all-reduce -- the chief must save
# that step's checkpoint, and every worker must exit at once (not wait in a collective for the
# rank that left, nor run a collective the others do not). 2 ranks under `tandem launch
# --max-restarts 0` (which then reports the stopped workers and exits non-zero), the MLP on
# Fashion-MNIST.
#
#   stop_agreement.sh TANDEM_BINARY SOURCE_DIR
set -uo pipefail
tandem=$1 src=$2
[[ -e /usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz ]] || { echo "SKIPPED: no data"; exit 77; }
work=$(mktemp -d /tmp/tandem-stop-XXXXXX)
trap 'pkill -KILL -f "$work" 2>/dev/null; rm -rf "$work"' EXIT
fail() { echo "FAIL: $*"; tail -20 "$work/run.log"; exit 1; }

"$tandem" launch --nproc-per-node 2 --max-restarts 0 "$src/configs/fashion_mnist_mlp.yaml" \
  strategy.name=ddp strategy.timeout_s=60 training.max_steps=100000 checkpoint.every_steps=0 \
  data.workers=1 logging.progress=none logging.every_steps=1 training.eval_every_epoch=false \
  checkpoint.dir="$work/ck" logging.dir="$work/log" >"$work/run.log" 2>&1 &
agent=$!
for _ in $(seq 300); do  # until training runs (metrics lines appear)
  [ -s "$work/log/metrics.jsonl" ] && break
  sleep 0.1
done
[ -s "$work/log/metrics.jsonl" ] || fail "training never started"
pid=$(pgrep -f -- "train .*checkpoint.dir=$work/ck" | while read -r p; do
        tr '\0' '\n' </proc/"$p"/environ 2>/dev/null | grep -qx RANK=1 && echo "$p"; done | head -1)
[ -n "$pid" ] || fail "no rank 1 worker found"
kill -TERM "$pid"
t0=$SECONDS
while kill -0 $agent 2>/dev/null && ((SECONDS - t0 < 30)); do sleep 0.2; done
kill -0 $agent 2>/dev/null && fail "the job still runs 30 s after rank 1 got SIGTERM"
wait $agent
echo "the job ended $((SECONDS - t0)) s after SIGTERM to rank 1"
grep -q "error" "$work/run.log" && fail "a rank failed instead of stopping"
steps=$(grep -o "\[rank [01]\] stopped at step [0-9]*" "$work/run.log" | sort)
echo "$steps"
[ "$(wc -l <<<"$steps")" = 2 ] || fail "expected both ranks to report their stop"
s0=$(grep -o "rank 0\] stopped at step [0-9]*" <<<"$steps" | grep -o "[0-9]*$")
s1=$(grep -o "rank 1\] stopped at step [0-9]*" <<<"$steps" | grep -o "[0-9]*$")
[ "$s0" = "$s1" ] || fail "the ranks stopped at different steps ($s0, $s1)"
[ -d "$work/ck/$(printf 'step-%08d' "$s0")" ] || fail "no checkpoint of step $s0"
echo "both ranks stopped after step $s0; its checkpoint is saved"
echo PASS
