#!/usr/bin/env bash
# SIGTERM to every process of a parameter_server job (2 sync workers + 1 server under `tandem
# launch --num-ps 1`), as Slurm delivers a preemption: the server and the workers get it directly,
# then the agent gets it and forwards a copy to each. The server must take the copy as the same
# request and keep serving until the chief's last checkpoint -- which reads the server's variables
# and optimizer state -- is saved. The race is made certain as in multiprocess/ps_preemption.sh:
# the chief is SIGSTOPped across the signals and continued 1.5 s after the copy reached the server.
# Then the checkpoint has its three files, resumes, and nothing of the job is left.
#
#   ps_preemption_every.sh TANDEM_BINARY SOURCE_DIR
set -uo pipefail
tandem=$1 src=$2
source "$src/tests/faults/lib.sh"
ft_setup ps-preempt
cfg=$FT_WORK/exp.yaml
ck=$FT_WORK/ck
ft_experiment "$cfg" "strategy: {name: parameter_server, num_ps: 1, mode: sync, timeout_s: 60}" \
  "checkpoint: {dir: '$ck', every_steps: 0, resume: auto}"

ft_bg "$FT_WORK/run.log" "$tandem" launch --nproc-per-node 2 --max-restarts 0 "$cfg"
agent=$FT_PID
ft_until 60 test -s "$FT_WORK/log/metrics.jsonl" || { cat "$FT_WORK/run.log"; ft_fail "training never started"; }
chief=$(ft_rank_pid 0) && other=$(ft_rank_pid 1) || ft_fail "the two workers were not found"
server=$(pgrep -f -- " ps $cfg") || ft_fail "no server found"
kill -STOP "$chief"
kill -TERM "$chief" "$other" "$server"
taken() { [ -z "$(grep -E '^ShdPnd:\s*0*[1-9a-f]' "/proc/$1/status" 2>/dev/null)" ]; }
ft_until 5 taken "$server" || ft_fail "the server did not take its SIGTERM"
kill -TERM "$agent"  # its copy goes to the server and both workers
copied() { grep -q "got SIGTERM: passed it to the workers" "$FT_WORK/run.log"; }
ft_until 5 copied || ft_fail "the agent did not forward the SIGTERM"
sleep 1.5
kill -CONT "$chief"
echo "SIGTERM to the server ($server) and both workers (the chief $chief stopped), then to the agent ($agent)"
rc=0
ft_wait "$agent" 60 || rc=$?
[ $rc != 124 ] || ft_fail "the job still runs 60 s after SIGTERM"
grep -E "^\[ps 0\]|stopped at step|tandem launch:" "$FT_WORK/run.log" | tail -6
step=$(grep -o "\[rank 0\] stopped at step [0-9]*" "$FT_WORK/run.log" | grep -o "[0-9]*$")
[ -n "$step" ] || ft_fail "the chief did not save its last checkpoint"
grep -q "\[ps 0\] tandem ps: shard 0 stopping on signal 15 (a second one)" "$FT_WORK/run.log" &&
  ft_fail "the server took the copy of the SIGTERM as a second signal"
ft_check_clean
ckpt=$(ft_checkpoint "$ck" "$step")
for f in model.safetensors optimizer.safetensors trainer_state.json; do
  [ -s "$ckpt/$f" ] || ft_fail "the stop's checkpoint $ckpt has no $f"
done
timeout 120 "$tandem" launch --nproc-per-node 2 --max-restarts 0 "$cfg" training.max_steps=$((step + 2)) \
  >"$FT_WORK/resume.log" 2>&1 || { tail "$FT_WORK/resume.log"; ft_fail "the resumed run failed"; }
grep -q "resumed from $ckpt (step $step" "$FT_WORK/resume.log" ||
  { tail "$FT_WORK/resume.log"; ft_fail "the second run did not resume from $ckpt"; }
echo "resumes: $(ft_show "resumed from .*" "$FT_WORK/resume.log")"
echo PASS
