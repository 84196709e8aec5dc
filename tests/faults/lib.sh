# Shared by the fault-matrix tests (sourced): a work directory for the test's lifetime, jobs started
# in sessions of their own, bounded waits, and the checks every cell ends with -- no process of the
# job left, no /dev/shm segment of the job left, the newest checkpoint complete and resumable.
#
#   source "$src/tests/faults/lib.sh"
#   ft_setup NAME                  # $FT_WORK (a fresh directory); everything is torn down at exit
#   ft_experiment FILE [YAML...]   # a small synthetic experiment under $FT_WORK (extra lines added)
#   ft_bg LOG CMD...               # CMD in a session of its own (pid = pgid in FT_PID)
#   ft_wait PID SECONDS            # its exit status, or 124 after killing its group at the deadline
#   ft_until SECONDS CMD...        # polls CMD every 0.1 s; fails after SECONDS
#   ft_rank_pid RANK               # the `tandem train` of that rank
#   ft_watch_shm                   # remembers the running workers' TANDEM_SHM_PREFIX (false: none)
#   ft_check_clean                 # no process and no segment of the job left
#   ft_check_resumes CFG DIR STEP [OVERRIDE...]  # one more step from DIR's STEP says "resumed from"
#   ft_has_checkpoint DIR, ft_newest_step DIR, ft_checkpoint DIR STEP, ft_last_logged_step
#   ft_host_clean HOST..., ft_host_rank_pid HOST RANK   # on emulated hosts (tests/multihost/lib.sh)
#
# The one decision: a job is found by its work directory, which every process of it names on its
# command line (the experiment file lives there), so the checks and the teardown never touch a
# process or a segment of another test running beside this one.

ft_skip() {
  echo "SKIPPED: $*"
  exit 77
}

ft_fail() {
  echo "FAIL: $*"
  exit 1
}

ft_setup() {
  FT_WORK=$(mktemp -d "/tmp/tandem-faults-$1-XXXXXX")
  FT_MOUNTS=()
  FT_SHM_PREFIXES=()
  trap ft_teardown EXIT
}

ft_teardown() {
  local pid m
  for pid in $(ft_job_pids); do kill -KILL "$pid" 2>/dev/null || true; done
  for m in "${FT_MOUNTS[@]}"; do umount -l "$m" 2>/dev/null || true; done
  for m in "${FT_SHM_PREFIXES[@]}"; do rm -f /dev/shm/"$m"* 2>/dev/null || true; done
  [ -n "${FT_KEEP:-}" ] || rm -rf "$FT_WORK"
}

# A 64-64-10 MLP on synthetic 8x8 images: a step takes well under a millisecond, so a test's time
# goes into the fault, not into training.
ft_experiment() {
  local file=$1
  shift
  cat >"$file" <<YAML
seed: 1
model: {name: mlp, hidden: [64]}
data: {name: synthetic, synthetic_shape: [1, 8, 8], synthetic_samples: 4096, batch_size: 16, workers: 0}
optimizer: {name: adam, lr: 0.001}
training: {epochs: 1000, threads: 1, eval_every_epoch: false}
logging: {dir: '$FT_WORK/log', every_steps: 1, progress: none, tensorboard: false}
YAML
  local line
  for line in "$@"; do echo "$line" >>"$file"; done
}

ft_bg() {
  local log=$1
  shift
  setsid "$@" >"$log" 2>&1 &
  FT_PID=$!
}

ft_wait() {
  local pid=$1 deadline=$((SECONDS + $2))
  while kill -0 "$pid" 2>/dev/null; do
    if ((SECONDS >= deadline)); then
      kill -KILL -- "-$pid" 2>/dev/null
      kill -KILL "$pid" 2>/dev/null
      wait "$pid" 2>/dev/null
      return 124
    fi
    sleep 0.1
  done
  wait "$pid"
}

ft_until() {
  local deadline=$((SECONDS + $1))
  shift
  until "$@"; do
    ((SECONDS < deadline)) || return 1
    sleep 0.1
  done
}

# Every live process of this test's job (not zombies: a zombie's command line is empty).
ft_job_pids() {
  [ -n "${FT_WORK:-}" ] || return 0
  pgrep -f -- "$FT_WORK" | grep -vx "$$" || true
}

ft_env_of() {  # PID NAME: the value of NAME in PID's environment
  tr '\0' '\n' <"/proc/$1/environ" 2>/dev/null | sed -n "s/^$2=//p"
}

ft_rank_pid() {
  local p
  for p in $(pgrep -f -- " train $FT_WORK"); do
    [ "$(ft_env_of "$p" RANK)" = "$1" ] && { echo "$p"; return 0; }
  done
  return 1
}

ft_watch_shm() {
  local p prefix
  for p in $(pgrep -f -- " train $FT_WORK"); do
    prefix=$(ft_env_of "$p" TANDEM_SHM_PREFIX)
    [ -n "$prefix" ] || continue
    [[ " ${FT_SHM_PREFIXES[*]} " == *" $prefix "* ]] || FT_SHM_PREFIXES+=("$prefix")
  done
  [ ${#FT_SHM_PREFIXES[@]} -gt 0 ]
}

ft_no_job_pids() { [ -z "$(ft_job_pids)" ]; }

# After the job's launcher has exited: no process of the job may outlive it by more than 5 s (a
# worker told to stop by its parent's death saves first), and nothing may be left under the
# shared-memory prefixes its agents gave their workers.
ft_check_clean() {
  if ! ft_until 5 ft_no_job_pids; then
    ps -o pid,ppid,stat,args -p "$(ft_job_pids | paste -sd,)" 2>/dev/null
    ft_fail "processes of the job outlived it: $(ft_job_pids | paste -sd' ')"
  fi
  local prefix left
  for prefix in "${FT_SHM_PREFIXES[@]}"; do
    left=$(ls /dev/shm 2>/dev/null | grep "^$prefix" || true)
    [ -z "$left" ] || ft_fail "segments left in /dev/shm: $left"
  done
  echo "clean: no process of the job left; nothing left in /dev/shm under ${FT_SHM_PREFIXES[*]:-(no shm prefix seen)}"
}

ft_checkpoint() {  # DIR STEP: its path
  printf '%s/step-%08d' "$1" "$2"
}

ft_newest_step() {  # DIR: the step of the newest step-* directory
  local newest
  newest=$(ls -d "$1"/step-* 2>/dev/null | sort | tail -1)
  [ -n "$newest" ] || return 1
  echo $((10#${newest##*step-}))
}

# The checkpoint of STEP has its three files, and `tandem train` resumes from it: one more step
# (train CFG with checkpoint.dir=DIR and the other overrides given) says "resumed from" it.
ft_check_resumes() {  # CFG DIR STEP [OVERRIDE...]
  local cfg=$1 dir=$2 step=$3 ck
  shift 3
  ck=$(ft_checkpoint "$dir" "$step")
  local f
  for f in model.safetensors optimizer.safetensors trainer_state.json; do
    [ -s "$ck/$f" ] || ft_fail "checkpoint $ck has no $f"
  done
  timeout 60 "$tandem" train "$cfg" checkpoint.dir="$dir" training.max_steps=$((step + 1)) "$@" \
    >"$FT_WORK/resume.log" 2>&1 || { tail "$FT_WORK/resume.log"; ft_fail "resuming from $ck failed"; }
  grep -q "resumed from $ck (step $step" "$FT_WORK/resume.log" ||
    { tail "$FT_WORK/resume.log"; ft_fail "the run did not resume from $ck"; }
  echo "resumes: $(grep -o "resumed from .*" "$FT_WORK/resume.log")"
}

ft_has_checkpoint() {  # DIR: a step-* directory exists
  compgen -G "$1/step-*" >/dev/null
}

# A log line of the job that names what it matched, for the test's output.
ft_show() {  # PATTERN LOG
  grep -o -m1 -- "$1" "$2"
}

ft_last_logged_step() {  # the step of the last line of the chief's metrics.jsonl
  tail -1 "$FT_WORK/log/metrics.jsonl" | grep -o '"step":[0-9]*' | grep -o '[0-9]*$'
}

# --- On emulated hosts (tests/multihost/lib.sh's cluster, after mh_setup; FT_WORK=$MH_WORK). Each
# host has its own /dev/shm, so any tandem segment in it is the job's.

ft_host_clean() {  # HOST...: no process left on each host, nothing left in its /dev/shm
  local h left
  for h in "$@"; do
    pids_left() { [ -z "$("$MH_CLUSTER_SH" pids "$h")" ]; }
    ft_until 5 pids_left || ft_fail "processes left on $h: $("$MH_CLUSTER_SH" pids "$h" | paste -sd' ')"
    left=$(mh_on "$h" sh -c 'ls /dev/shm | grep "^tandem-" || true')
    [ -z "$left" ] || ft_fail "segments left in $h's /dev/shm: $left"
  done
  echo "clean: no process left on $*; nothing left in their /dev/shm"
}

ft_host_rank_pid() {  # HOST RANK: the `tandem train` of that rank on that host
  local p
  for p in $("$MH_CLUSTER_SH" pids "$1"); do
    tr '\0' ' ' <"/proc/$p/cmdline" 2>/dev/null | grep -q " train " || continue
    [ "$(ft_env_of "$p" RANK)" = "$2" ] && { echo "$p"; return 0; }
  done
  return 1
}
