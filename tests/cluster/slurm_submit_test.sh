#!/usr/bin/env bash
# `tandem submit slurm` on a real Slurm controller (label cluster): munged, slurmctld and slurmd
# on localhost from a slurm.conf in a temporary directory (tests/cluster/slurm_local.sh), then
#   1. launcher tandem: --nodes 1 --ntasks-per-node 2 -> one `tandem launch` starting 2 DDP ranks;
#   2. launcher mpi:    srun --mpi=pmix starts 2 `tandem train` ranks (MPI backend);
# each must finish COMPLETED with the `final:` line in its output file, a checkpoint saved by a
# world of 2, and the same losses and accuracy as one local process (DDP computes the same math);
#   3. strategy parameter_server (sync): 2 `tandem ps` servers as an srun step of their own;
#   4. tandem status / tandem cancel on a long job that is pending or running.
# Teardown stops only the daemons this test started, by pid. Usage: slurm_submit_test.sh TANDEM SRC
set -uo pipefail
TANDEM="$1"
SRC="$2"
CONFIG="$SRC/configs/fashion_mnist_mlp.yaml"
STEPS=20
[ -d /usr/share/datasets/fashion-mnist ] || { echo "dataset-fashion-mnist not installed"; exit 77; }
for tool in munged slurmctld slurmd sbatch srun scontrol; do
  command -v "$tool" >/dev/null || { echo "FAIL: $tool missing: run scripts/install-deps.sh"; exit 1; }
done

source "$SRC/tests/cluster/slurm_local.sh"
TMP="$(mktemp -d /tmp/tandem-slurm-test.XXXXXX)"
cleanup() {
  slurm_stop
  rm -rf "$TMP"
}
trap cleanup EXIT
fail() {
  echo "FAIL: $*"
  slurm_log_tail
  exit 1
}

slurm_start "$TMP/slurm" || fail "the local Slurm did not start"
mkdir -p "$TMP/work"
cd "$TMP/work" || exit 1

# job_state JOB: COMPLETED, RUNNING, ... from scontrol (MinJobAge keeps ended jobs visible).
job_state() {
  scontrol show job -o "$1" 2>/dev/null | tr ' ' '\n' | sed -n 's/^JobState=//p'
}

# wait_job JOB SECONDS: until the job has ended; prints its final state.
wait_job() {
  local deadline=$((SECONDS + $2)) state
  while :; do
    state="$(job_state "$1")"
    case "$state" in
      COMPLETED | FAILED | CANCELLED | TIMEOUT | NODE_FAIL | OUT_OF_MEMORY | BOOT_FAIL | DEADLINE)
        echo "$state"; return 0 ;;
    esac
    [ "$SECONDS" -lt "$deadline" ] || { echo "TIMEOUT_WAITING($state)"; return 1; }
    sleep 1
  done
}

# The reference: the same experiment in one local process.
"$TANDEM" train "$CONFIG" training.max_steps=$STEPS logging.progress=none \
  logging.dir="$TMP/ref" checkpoint.dir="$TMP/ref/ckpt" >"$TMP/ref.out" 2>&1 ||
  fail "the local reference run failed: $(cat "$TMP/ref.out")"
REF="$(grep '^final:' "$TMP/ref.out")"
[ -n "$REF" ] || fail "no final line in the reference run"
echo "reference: $REF"

# same_numbers LINE: train_loss, test_loss, test_accuracy of LINE within 2e-4 of the reference's
# (DDP sums gradients in another order; the printed 4 decimals may differ in the last one).
same_numbers() {
  local key a b
  for key in step train_loss test_loss test_accuracy; do
    a="$(grep -o "$key=[0-9.e+-]*" <<<"$1" | cut -d= -f2)"
    b="$(grep -o "$key=[0-9.e+-]*" <<<"$REF" | cut -d= -f2)"
    awk -v a="$a" -v b="$b" 'BEGIN { d = a - b; if (d < 0) d = -d; exit !(a != "" && d <= 2e-4) }' ||
      { echo "$key: $a, reference $b"; return 1; }
  done
}

# run_job NAME ARGS...: submits, waits, checks the output; the job's output file path on stdout.
run_job() {
  local name="$1"
  shift
  local out id state log
  out="$("$TANDEM" submit slurm "$CONFIG" "$@" 2>&1)" || fail "$name: submit failed: $out"
  grep -q "$(cat "$TMP"/work/runs/"$name"/submit/*/job_token 2>/dev/null || echo NO-TOKEN-FILE)" \
    <<<"$out" && fail "$name: the job token was printed"
  id="$(sed -n 's/^submitted Slurm job \([0-9]*\)$/\1/p' <<<"$out")"
  [ -n "$id" ] || fail "$name: no job id in: $out"
  log="$(sed -n 's/^output: //p' <<<"$out")"
  [ "$log" = "$TMP/work/runs/$name/slurm-$id.out" ] || fail "$name: output path '$log'"
  state="$(wait_job "$id" 240)"
  [ "$state" = COMPLETED ] || {
    cat "$log" "${log%.out}.err" 2>/dev/null | tail -n 40
    fail "$name: job $id ended $state"
  }
  echo "$log"
}

check_job() {
  local name="$1" log="$2" final
  final="$(grep -o 'final: .*' "$log" | head -n 1)"
  [ -n "$final" ] || { cat "$log" "${log%.out}.err"; fail "$name: no final line in $log"; }
  echo "$name: $final"
  same_numbers "$final" || fail "$name: the job's numbers differ from one local process's"
  # The checkpoint written at the end records how many ranks trained.
  grep -q '"world_size": *2' "$TMP"/work/runs/"$name"/ckpt/step-*/trainer_state.json ||
    fail "$name: the last checkpoint was not saved by a world of 2: $(cat "$TMP"/work/runs/"$name"/ckpt/step-*/trainer_state.json)"
  local token_file
  token_file="$(ls "$TMP"/work/runs/"$name"/submit/*/job_token)"
  [ "$(stat -c %a "$token_file")" = 600 ] || fail "$name: job token file mode $(stat -c %a "$token_file")"
  ! grep -q -f "$token_file" "$log" "${log%.out}.err" || fail "$name: the token is in the job's output"
}

common=(--nodes 1 --ntasks-per-node 2 strategy.name=ddp training.max_steps=$STEPS
        logging.progress=none data.workers=1)

# 1. One `tandem launch` per node, 2 workers, Gloo through the launcher's store.
log="$(run_job launch "${common[@]}" logging.dir=runs/launch checkpoint.dir=runs/launch/ckpt)" || exit 1
check_job launch "$log"
grep -q 'node 0 of 1: 2 workers' "${log%.out}.err" "$log" ||
  fail "launch: tandem launch did not start 2 workers: $(cat "${log%.out}.err")"

# 2. srun --mpi=pmix, 2 ranks of `tandem train` (MPI backend).
log="$(run_job mpi "${common[@]}" --launcher mpi logging.dir=runs/mpi checkpoint.dir=runs/mpi/ckpt)" || exit 1
check_job mpi "$log"
for r in 0 1; do  # srun --label: each rank's own line, prefixed with its task number
  grep -q "^$r: tandem train: rank $r of 2 (.*from pmix variables)" "$log" "${log%.out}.err" ||
    fail "mpi: rank $r did not report: $(cat "${log%.out}.err")"
done

# 3. strategy parameter_server (sync, the same math as ddp): 2 `tandem ps` servers as an srun
#    step of their own on the first node, 2 workers through `tandem launch`.
ps_args=("${common[@]/strategy.name=ddp/strategy.name=parameter_server}")
log="$(run_job ps "${ps_args[@]}" strategy.num_ps=2 logging.dir=runs/ps checkpoint.dir=runs/ps/ckpt)" || exit 1
check_job ps "$log"
for shard in 0 1; do
  grep -q "tandem ps: shard $shard listening on" "$log" "${log%.out}.err" ||
    fail "ps: server $shard did not run as a task of the job: $(tail -n 20 "${log%.out}.err")"
done

# 4. status and cancel on a job that is still queued or running.
out="$("$TANDEM" submit slurm "$CONFIG" "${common[@]/training.max_steps=$STEPS/training.max_steps=0}" \
  training.epochs=15 logging.dir=runs/long checkpoint.dir=runs/long/ckpt 2>&1)" ||
  fail "long: submit failed: $out"
id="$(sed -n 's/^submitted Slurm job \([0-9]*\)$/\1/p' <<<"$out")"
status="$("$TANDEM" status "$id" 2>&1)" || fail "status $id: $status"
echo "status: $status"
grep -Eq "^$id (PENDING|RUNNING|CONFIGURING) name=tandem-fashion_mnist_mlp " <<<"$status" ||
  fail "status: unexpected '$status'"
cancel="$("$TANDEM" cancel "$id" 2>&1)" || fail "cancel $id: $cancel"
[ "$cancel" = "cancelled $id" ] || fail "cancel: unexpected '$cancel'"
state="$(wait_job "$id" 60)"
[ "$state" = CANCELLED ] || fail "job $id is $state after tandem cancel"
status="$("$TANDEM" status "$id" 2>&1)"
grep -q "^$id CANCELLED " <<<"$status" || fail "status after cancel: '$status'"
echo "status after cancel: $status"

# A partition this controller does not have (sinfo asked): a usage error (2) naming it; nothing
# submitted.
out="$("$TANDEM" submit slurm "$CONFIG" "${common[@]}" --partition nosuch 2>&1)"
rc=$?
[ "$rc" -eq 2 ] || fail "--partition nosuch exited $rc: $out"
[ "$out" = "tandem: error: cluster.slurm.partition: 'nosuch' is not a partition of this cluster (sinfo lists: debug)" ] ||
  fail "--partition nosuch: unexpected '$out'"
echo "unknown partition: $out"

# An unknown job is a runtime error (1), a malformed id a usage error (2).
"$TANDEM" status 999999 >/dev/null 2>&1
[ $? -eq 1 ] || fail "status of an unknown job should exit 1"
"$TANDEM" status abc >/dev/null 2>&1
[ $? -eq 2 ] || fail "status abc should exit 2"
echo PASS
