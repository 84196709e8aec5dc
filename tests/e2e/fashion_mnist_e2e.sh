#!/usr/bin/env bash
# End to end: train configs/fashion_mnist_mlp.yaml through the `tandem` binary for a short run,
# check the test accuracy it reaches, then run the same command with 200 more steps and check that
# it resumed from the saved checkpoint and finished at the new step.
#
#   fashion_mnist_e2e.sh TANDEM_BINARY CONFIG
#
# Exit 0 pass, 1 fail, 77 skipped (dataset-fashion-mnist is not installed).
set -euo pipefail

tandem=$1
config=$2
data=/usr/share/datasets/fashion-mnist
steps=1500
# Measured: 1500 steps of batch 128 (3.2 epochs, cosine over the 1500 steps) reach 0.8836 test
# accuracy (0.8601 after the first epoch), in about 140 s of CPU time for both runs together;
# 0.87 leaves more than a point for rounding differences between machines, while a run with a
# broken schedule, optimizer or data order stays below it.
threshold=0.87

if [[ ! -e $data/train-images-idx3-ubyte.gz && ! -e $data/train-images-idx3-ubyte ]]; then
  echo "SKIPPED: $data not found (install the Debian package dataset-fashion-mnist)"
  exit 77
fi

work=$(mktemp -d /tmp/tandem-e2e-XXXXXX)
trap 'rm -rf "$work"' EXIT
common=(data.batch_size=128 "checkpoint.dir=$work/checkpoints" "logging.dir=$work/logs"
        logging.progress=plain logging.every_steps=500)

fail() {
  echo "FAIL: $*"
  exit 1
}

# The value of KEY= in the final line FINAL.
field() {
  sed -n "s/.* $1=\([^ ]*\).*/\1/p" <<<"$2"
}

echo "== tandem train $config ${common[*]} training.max_steps=$steps"
"$tandem" train "$config" "${common[@]}" training.max_steps=$steps | tee "$work/first.txt"
final=$(grep '^final: epoch=' "$work/first.txt" | tail -n 1) || fail "no final line"
[[ $final =~ ^final:\ epoch=[0-9]+\ step=[0-9]+\ train_loss=[0-9.]+\ test_loss=[0-9.]+\ test_accuracy=[0-9.]+\ samples_per_sec=[0-9.]+$ ]] ||
  fail "final line not in the documented form: $final"
[[ $(field step "$final") == "$steps" ]] || fail "expected step=$steps: $final"
accuracy=$(field test_accuracy "$final")
awk -v a="$accuracy" -v t="$threshold" 'BEGIN { exit !(a >= t) }' ||
  fail "test_accuracy $accuracy is below $threshold after $steps steps"
echo "ok: test_accuracy $accuracy >= $threshold after $steps steps"

more=$((steps + 200))
echo "== tandem train $config ${common[*]} training.max_steps=$more"
"$tandem" train "$config" "${common[@]}" training.max_steps=$more | tee "$work/second.txt"
grep -q "^resumed from $work/checkpoints/$(printf 'step-%08d' "$steps") (step $steps," "$work/second.txt" ||
  fail "the second run did not resume from step $steps"
final=$(grep '^final: epoch=' "$work/second.txt" | tail -n 1) || fail "no final line in the resumed run"
[[ $(field step "$final") == "$more" ]] || fail "expected step=$more after resuming: $final"
accuracy=$(field test_accuracy "$final")
awk -v a="$accuracy" -v t="$threshold" 'BEGIN { exit !(a >= t) }' ||
  fail "test_accuracy $accuracy fell below $threshold after resuming"
echo "ok: resumed at step $steps and finished at step $more (test_accuracy $accuracy)"
