#!/usr/bin/env bash
# Preemption of a parameter_server job: SIGTERM reaches the servers and the workers together (the
# agent forwards it to all of them at once, as Slurm and Kubernetes signal a whole job), and the
# chief's last checkpoint reads the servers' variables and optimizer state. The servers must stay
# up until the chief has saved. The race is made certain: the chief is SIGSTOPped before the
# SIGTERM and continued 1.5 s later, long after a server that stops on SIGTERM (200 ms) is gone.
# Then: the stop's checkpoint exists, has its three files, and a second run resumes from it.
# 2 sync workers + 1 server under `tandem launch`, an MLP on synthetic data.
#
#   ps_preemption.sh TANDEM_BINARY
set -uo pipefail
tandem=$1
work=$(mktemp -d /tmp/tandem-ps-preempt-XXXXXX)
trap 'pkill -KILL -f "$work" 2>/dev/null; rm -rf "$work"' EXIT
fail() { echo "FAIL: $*"; tail -30 "$work/run.log"; exit 1; }

cat >"$work/exp.yaml" <<YAML
seed: 1
model: {name: mlp, hidden: [64]}
data: {name: synthetic, synthetic_shape: [1, 8, 8], synthetic_samples: 4096, batch_size: 16, workers: 0}
optimizer: {name: adam, lr: 0.001}
strategy: {name: parameter_server, num_ps: 1, mode: sync, timeout_s: 60}
training: {epochs: 1000, threads: 1, eval_every_epoch: false}
checkpoint: {dir: '$work/ck', every_steps: 0, resume: auto}
logging: {dir: '$work/log', every_steps: 1, progress: none, tensorboard: false}
YAML

"$tandem" launch --nproc-per-node 2 --max-restarts 0 "$work/exp.yaml" >"$work/run.log" 2>&1 &
agent=$!
for _ in $(seq 600); do  # until training runs (metrics lines appear)
  [ -s "$work/log/metrics.jsonl" ] && break
  sleep 0.1
done
[ -s "$work/log/metrics.jsonl" ] || fail "training never started"
chief=$(pgrep -f -- "train $work/exp.yaml" | while read -r p; do
          tr '\0' '\n' </proc/"$p"/environ 2>/dev/null | grep -qx RANK=0 && echo "$p"; done | head -1)
[ -n "$chief" ] || fail "no chief (rank 0) found"
kill -STOP "$chief"
kill -TERM $agent  # the agent passes it to both workers and the server at once
sleep 1.5
kill -CONT "$chief"
t0=$SECONDS
while kill -0 $agent 2>/dev/null && ((SECONDS - t0 < 60)); do sleep 0.2; done
kill -0 $agent 2>/dev/null && fail "the job still runs 60 s after SIGTERM"
wait $agent
step=$(grep -o "\[rank 0\] stopped at step [0-9]*" "$work/run.log" | grep -o "[0-9]*$")
[ -n "$step" ] || fail "the chief did not report its stop and checkpoint"
ck=$work/ck/$(printf 'step-%08d' "$step")
for f in model.safetensors optimizer.safetensors trainer_state.json; do
  [ -s "$ck/$f" ] || fail "the stop's checkpoint $ck has no $f"
done
grep -q "serving until every worker is done" "$work/run.log" ||
  fail "the server did not wait for the workers"
echo "preempted at step $step: checkpoint $ck is complete"

# The checkpoint resumes: two more steps from it.
"$tandem" launch --nproc-per-node 2 --max-restarts 0 "$work/exp.yaml" \
  training.max_steps=$((step + 2)) >"$work/resume.log" 2>&1 || {
  tail -30 "$work/resume.log"; fail "the resumed run failed"; }
grep -q "resumed from $ck (step $step" "$work/resume.log" || {
  tail -30 "$work/resume.log"; fail "the second run did not resume from $ck"; }
grep -q "final: epoch=[0-9]* step=$((step + 2)) " "$work/resume.log" || {
  tail -30 "$work/resume.log"; fail "the resumed run did not end at step $((step + 2))"; }
echo "resumed from step $step and finished at step $((step + 2))"
echo PASS
